"""Offline exchange with cryoSPARC (no server needed).

``export``: a folder with ``particles.star`` (a GenEM simulation, a denoise or translate output) becomes a folder
that cryoSPARC's *Import Result Group* job reads: ``<name>_particles.cs`` + ``<name>_particles.csg`` (and, for a
simulation, ``<name>_micrographs.cs`` + ``.csg``), with the image files linked or copied beside them. All paths
inside start with ``>`` (relative to the .csg's folder), so the folder can be moved or copied to the cryoSPARC
machine as a whole.

``import``: a cryoSPARC particle ``.cs`` (from a job folder, or an exported group) becomes ``particles.star`` in a
new folder, with image paths relative to it, for the engine (``genem denoise apply --particles ...``). The
cryoSPARC uid of each particle travels in ``rlnGenemCsUid``, so ``export --passthrough X.cs`` puts the engine's
output back together with every slot of the original.
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path

import numpy as np
from cryosparc.dataset import Dataset

from genem.io import GenemInputError, atomic_path, read_particles_star, read_star, write_star, write_text_atomic
from genem.io import dataset as L
from genem.io.cs import blob_paths, merge_into, read_cs, write_cs
from genem.io.cs_convert import (
    cs_dataset_to_star, micrograph_shapes_px, micrographs_star_to_cs_dataset, star_to_cs_dataset,
)
from genem.io.outputs import check_out_dir, claim_out_dir
from genem.io.particles import image_files

LINK_MODES = ("hardlink", "copy", "symlink")


def find_particles_star(src) -> Path:
    src = Path(src)
    if src.is_file() and src.suffix == ".star":
        return src
    if (src / L.PARTICLES_STAR).is_file():
        return src / L.PARTICLES_STAR
    if not src.exists():
        raise GenemInputError(src, "not found")
    raise GenemInputError(src, f"no {L.PARTICLES_STAR} in this folder (give a GenEM dataset, denoise or translate output)")


def _place(src: Path, dst: Path, mode: str) -> None:
    """Put ``src`` at ``dst`` (hard link, copy or symlink); an existing ``dst`` of the same size is kept (resume)."""
    if dst.exists() and dst.stat().st_size == src.stat().st_size:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        os.unlink(tmp)
        if mode == "symlink":
            os.symlink(os.path.abspath(src), tmp)
        elif mode == "hardlink":
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
        else:
            shutil.copyfile(src, tmp)


def _inside(root: Path, rel: str, source) -> str:
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise GenemInputError(source, f"path {rel} is outside the dataset folder; cannot export it")
    return p.as_posix()


def csg_text(*, name: str, title: str, description: str, group_type: str, results: dict, n: int) -> str:
    """The YAML of a cryoSPARC result group (.csg) file; ``results`` maps slot name -> metafile (.cs beside it)."""
    import cryosparc

    lines = [f"created: {_dt.datetime.now().isoformat(sep=' ')}", "group:",
             f"  description: {_yaml_str(description)}", f"  name: {name}", f"  title: {_yaml_str(title)}",
             f"  type: {group_type}", "results:"]
    for slot, metafile in results.items():
        lines += [f"  {slot}:", f"    metafile: '>{metafile}'", f"    num_items: {n}",
                  f"    type: {group_type}.{slot.split('_', 1)[0] if slot.startswith('blob_') else slot}"]
    lines.append(f"version: v{cryosparc.__version__}")
    return "\n".join(lines) + "\n"


def _yaml_str(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


EXPORT_COMMAND = "genem-cryosparc export"
IMPORT_COMMAND = "genem-cryosparc import"


def export_dataset(src, out_dir, *, name: str = "genem", passthrough_cs=None, link: str = "hardlink",
                   include_micrographs: bool = True) -> dict:
    """Export ``src`` (folder with particles.star, or the STAR) to ``out_dir`` for Import Result Group.

    Returns ``{"particles": csg_path[, "micrographs": csg_path]}``. Writing order makes a half-done export
    recognisable: data files first, then the .cs, and the .csg last (it is what cryoSPARC is pointed at)."""
    if link not in LINK_MODES:
        raise GenemInputError("--link", f"must be one of {', '.join(LINK_MODES)}")
    star = find_particles_star(src)
    root = star.parent
    out = Path(out_dir)
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise GenemInputError(out, f"is inside the input folder {root}; choose an output folder outside it")
    check_out_dir(out, EXPORT_COMMAND)
    optics, parts = read_particles_star(star)
    if len(parts) == 0:
        raise GenemInputError(star, "no particles to export")
    claim_out_dir(out, EXPORT_COMMAND)

    files = sorted({_inside(root, f, star) for f in image_files(parts)})
    mic_star = root / L.MICROGRAPHS_STAR
    mic_names: list[str] = []
    shapes = None
    if "rlnMicrographName" in parts.columns:
        mic_names = sorted({str(s) for s in parts["rlnMicrographName"]})
        if all((root / m).is_file() for m in mic_names):
            shapes = micrograph_shapes_px(root, mic_names)
    if include_micrographs and shapes is not None:
        files += [_inside(root, m, star) for m in mic_names]
    for rel in files:
        if not (root / rel).is_file():
            raise GenemInputError(root / rel, "image file not found")
        _place(root / rel, out / rel, link)

    dset = star_to_cs_dataset(optics, parts, path_prefix=">", micrograph_shape_px=shapes, source=str(star))
    if passthrough_cs is not None:
        base = read_cs(passthrough_cs)
        dset = merge_into(base, dset, slots=dset.prefixes())
    slots = [s for s in ("blob", "ctf", "alignments3D", "location") if s in dset.prefixes()]
    slots += [s for s in dset.prefixes() if s not in slots]
    cs_name = f"{name}_particles.cs"
    write_cs(out / cs_name, dset)
    result = {}
    write_text_atomic(out / f"{name}_particles.csg", csg_text(
        name="particles", title=f"GenEM particles ({name})", description=f"GenEM export of {star}",
        group_type="particle", results={s: cs_name for s in slots}, n=len(dset)))
    result["particles"] = out / f"{name}_particles.csg"

    if include_micrographs and shapes is not None and mic_star.is_file():
        b = read_star(mic_star)
        mics = b.get("micrographs")
        if mics is not None and len(mics):
            mics = mics[mics["rlnMicrographName"].astype(str).isin(mic_names)].reset_index(drop=True)
            mdset = micrographs_star_to_cs_dataset(b.get("optics"), mics, micrograph_shape_px=shapes,
                                                   path_prefix=">", source=str(mic_star))
            mcs = f"{name}_micrographs.cs"
            write_cs(out / mcs, mdset)
            write_text_atomic(out / f"{name}_micrographs.csg", csg_text(
                name="micrographs", title=f"GenEM micrographs ({name})", description=f"GenEM export of {mic_star}",
                group_type="exposure", results={"micrograph_blob": mcs, "ctf": mcs}, n=len(mdset)))
            result["micrographs"] = out / f"{name}_micrographs.csg"
    return result


def guess_project_dir(cs_path: Path, dset: Dataset, project_dir=None) -> Path:
    """Folder the non-``>`` blob paths are relative to: ``project_dir`` if given, else the .cs folder or its parent
    (a cryoSPARC job folder sits in the project directory), whichever holds the first image file."""
    if project_dir is not None:
        return Path(project_dir)
    paths = blob_paths(dset)[:1] if len(dset) else []
    if not paths or paths[0].startswith(">") or os.path.isabs(paths[0]):
        return cs_path.parent
    for cand in (cs_path.parent, cs_path.parent.parent):
        if (cand / paths[0]).exists():
            return cand
    raise GenemInputError(cs_path, f"image file {paths[0]} not found next to the .cs or in its parent folder; "
                                   "pass --project-dir (the cryoSPARC project directory)")


def import_particles(cs_path, out_dir, *, project_dir=None) -> Path:
    """cryoSPARC particles -> ``out_dir/particles.star`` (paths relative to ``out_dir``) + ``out_dir/input.cs``."""
    cs_path = Path(cs_path)
    dset = read_cs(cs_path)
    base = guess_project_dir(cs_path, dset, project_dir)
    out = Path(out_dir)
    if out.resolve() == cs_path.parent.resolve():
        raise GenemInputError(out, "choose an output folder other than the input's folder")
    check_out_dir(out, IMPORT_COMMAND, markers=("input.cs",))
    paths = blob_paths(dset) if "blob/path" in dset.fields() else []
    for p in sorted(set(paths)):
        full = (cs_path.parent / p[1:]) if p.startswith(">") else (Path(p) if os.path.isabs(p) else base / p)
        if not full.is_file():
            raise GenemInputError(full, f"image file not found (referenced by {cs_path.name})")
    # '>' paths are relative to the .cs folder, the others to the project directory
    gt = np.array([p.startswith(">") for p in paths], bool)
    if gt.any() and not gt.all():
        raise GenemInputError(cs_path, "mixes '>'-relative and project-relative paths")
    root = cs_path.parent if gt.any() else base
    optics, parts = cs_dataset_to_star(dset, project_root=root, star_root=out, source=str(cs_path))
    claim_out_dir(out, IMPORT_COMMAND, markers=("input.cs",))
    write_cs(out / "input.cs", dset)
    write_star(out / L.PARTICLES_STAR, {"optics": optics, "particles": parts})
    return out / L.PARTICLES_STAR
