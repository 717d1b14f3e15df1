"""Apply a trained translator to a simulated dataset folder: a new folder with the same layout, in which the noisy
micrographs are replaced by translated ones and every annotation is carried over.

- ``Micrographs/``: translated (normalised to zero mean, unit variance per micrograph, float32).
- ``Particles/``: re-extracted from the translated micrographs with the simulator's own extraction
  (``genem.simulate.extract``: RELION's box centring, contrast inversion and background normalisation).
- Copied byte for byte: ``micrographs.star``, ``particles.star``, ``particles.cs``, ``Coordinates/``, ``Clean/``,
  ``Masks/``, ``Ice/``, ``ParticlesClean/`` (clean twins stay on the simulation's scale), ``ground_truth/``.
  All paths in the tables are relative to the folder and keep their names, so they stay valid.
- ``manifest.json`` (written last, so its presence means "finished"): the simulation's manifest plus a
  ``translation`` section (model, its training summary, tiling parameters, source folder).

Resumable: each translated micrograph leaves ``.parts/translate_mic_NNNNNN.json``; a re-run skips those.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

import genem
from genem.io import GenemDataset, GenemInputError, read_mrc, write_mrc
from genem.io import dataset as L
from genem.io.dataset import DatasetWriter
from genem.io.outputs import check_out_dir, claim_out_dir
from genem.io.star import split_image_name
from genem.ops import normalize_image_2d
from genem.progress import ProgressCallback, report

from .data import prepare_simulated_micrograph
from .model import load_model
from .tiling import translate_image_tiled


def translate_micrograph(generator, image_hw: np.ndarray, *, clip_sigma: float = 6.0, tile_px: int = 2048,
                         context_px: int = 48, blend_px: int = 32, device="cpu") -> np.ndarray:
    """Normalise and flatten a simulated micrograph, translate it tile by tile, and renormalise the result."""
    x = prepare_simulated_micrograph(image_hw, clip_sigma, flatten=True)
    y = translate_image_tiled(generator, x, tile_px=tile_px, context_px=context_px, blend_px=blend_px,
                              device=device)
    return normalize_image_2d(y)[0]


APPLY_COMMAND = "genem translate apply"
#: its records (resumable runs); its records folder alone is what an interrupted run may have left
OWN_OUTPUT = dict(markers=(f"{L.PARTS_DIR}/translate_job.json",), own_names=(L.PARTS_DIR,))


def _check_out(sim_root: Path, out: Path):
    s, o = sim_root.resolve(), out.resolve()
    if o == s or s in o.parents:
        raise GenemInputError(out, "output folder must not be the simulated folder or inside it")
    check_out_dir(out, APPLY_COMMAND, **OWN_OUTPUT)
    if DatasetWriter(out).is_complete:
        raise GenemInputError(out, "already holds a finished dataset; choose a new --out")


def apply_translator(model, simulated_dir, out_dir, *, device: str = "cpu", tile_px: int = 2048,
                     context_px: int = 48, blend_px: int = 32, progress: ProgressCallback | None = None,
                     command: list[str] | None = None) -> Path:
    """Translate every noisy micrograph of ``simulated_dir`` into ``out_dir``; return ``out_dir``."""
    sim_root = Path(simulated_dir)
    ds = GenemDataset.open(sim_root)
    out = Path(out_dir)
    _check_out(sim_root, out)
    gen, meta = load_model(model, device)
    model_px = float(meta["pixel_size_A"])
    if abs(ds.pixel_size_A - model_px) > 0.01 * model_px:
        raise GenemInputError(sim_root, f"pixel size {ds.pixel_size_A:.4g} A differs from the translator's "
                                        f"{model_px:.4g} A (train on a simulation at this pixel size)")
    mics = ds.micrographs()
    names = list(mics["rlnMicrographName"])
    for name in names:
        if not ds.micrograph_path(name).exists():
            raise GenemInputError(ds.micrograph_path(name), f"micrograph listed in {L.MICROGRAPHS_STAR} is missing")
    parts_star = sim_root / L.PARTICLES_STAR
    particles = ds.particles() if parts_star.exists() else None
    box = None
    if particles is not None and len(particles):
        optics, _ = ds.particles_star()
        box = int(optics["rlnImageSize"].iloc[0])

    writer = DatasetWriter(claim_out_dir(out, APPLY_COMMAND, **OWN_OUTPUT)).prepare()
    job = {"model": str(Path(model).resolve()), "simulated": str(sim_root.resolve()), "tile_px": tile_px,
           "context_px": context_px, "blend_px": blend_px}
    if writer.has_record("translate_job"):
        if writer.read_record("translate_job") != job:
            raise GenemInputError(out, "holds a translation with another model, input or tiling; choose a new --out")
    else:
        writer.write_record("translate_job", job)

    from genem.simulate.extract import extract_boxes, normalise_like_relion

    started = time.time()
    todo = [n for n in names if not writer.has_record(f"translate_{Path(n).stem}")]
    report(progress, "translate apply", len(names) - len(todo), len(names), "mic")
    for k, name in enumerate(todo):
        img, _ = read_mrc(ds.micrograph_path(name))
        if img.ndim == 3 and img.shape[0] == 1:
            img = img[0]
        y = translate_micrograph(gen, img, clip_sigma=float(meta.get("clip_sigma", 6.0)), tile_px=tile_px,
                                 context_px=context_px, blend_px=blend_px, device=device)
        writer.write_micrograph(Path(name).stem, y, ds.pixel_size_A)
        n_parts = 0
        if box is not None:
            rows = particles[particles["rlnMicrographName"] == name]
            if len(rows):
                files = {split_image_name(s)[1] for s in rows["rlnImageName"]}
                idx = np.array([split_image_name(s)[0] for s in rows["rlnImageName"]])
                if len(files) != 1 or not np.array_equal(np.sort(idx), np.arange(len(idx))):
                    raise GenemInputError(parts_star, f"particles of {name} are not one complete stack")
                order = np.argsort(idx)
                r = rows.iloc[order]
                boxes = normalise_like_relion(extract_boxes(y, r["rlnCoordinateX"].to_numpy(),
                                                            r["rlnCoordinateY"].to_numpy(), box))
                write_mrc(out / files.pop(), boxes, ds.pixel_size_A)
                n_parts = len(rows)
        writer.write_record(f"translate_{Path(name).stem}", {"micrograph": name, "particles": n_parts})
        report(progress, "translate apply", len(names) - len(todo) + k + 1, len(names), "mic")

    writer.copy_from(sim_root)
    try:
        from genem.simulate.preview import write_preview

        first = names[0]
        rows = [] if particles is None else particles[particles["rlnMicrographName"] == first].to_dict("records")
        write_preview(out, first, rows, box or 64)
    except Exception as e:  # a preview must never sink a finished dataset
        print(f"genem: warning: preview not written ({e})", file=sys.stderr)
    manifest = ds.manifest
    manifest["kind"] = "genem-translation"
    manifest["translation"] = {
        **job, "genem_version": genem.__version__, "model_pixel_size_A": model_px,
        "model_steps": meta.get("steps"), "model_train_config": meta.get("train_config"),
        "real_micrographs": meta.get("real"), "device": str(device),
        "micrographs": "translated, normalised to mean 0 / sd 1 per micrograph",
        "particles": "re-extracted from the translated micrographs (genem.simulate.extract)",
        "clean_twins": "copied from the simulation (simulation scale)",
        "command_line": command if command is not None else sys.argv,
        "wall_time_s_last_run": round(time.time() - started, 2), "torch": torch.__version__,
    }
    writer.write_manifest(manifest)
    return out
