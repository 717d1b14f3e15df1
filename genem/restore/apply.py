"""Apply a trained denoiser to particle sets (RELION STAR, cryoSPARC .cs, bare .mrcs) and micrographs.

Particles are streamed: the metadata table is read once, every referenced stack is checked (exists, index in
range, one box size) before anything is written, then each stack is denoised in batches into a memory-mapped
temporary file that is renamed onto its final name only when complete; the metadata file (same format, same row
order, every other column kept, image names pointing at the new stacks) is written last. Memory is one batch of
images plus the table, whatever the stack size. Paths in the output table are written relative to the same root
the input's paths were resolved against (the RELION / cryoSPARC project directory).

Geometry: particles are resampled in Fourier space to the model's pixel size, padded to the U-Net's stride,
RELION-normalised (background mean/sd), denoised, and mapped back to the input box, pixel size and intensity scale.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import torch

from genem.io import GenemInputError, read_mrc, write_json_atomic, write_mrc, write_star
from genem.io.atomic import TMP_MARK, atomic_path
from genem.io.star import join_image_name, read_star, split_image_name
from genem.progress import ProgressCallback, report

from .model import Denoiser
from .normalize import normalize_images, resample_fourier_2d

MAX_UPSAMPLING = 1.5  # refuse particles whose pixels are coarser than the model's by more than this factor
OUT_STACK_DIR = "Denoised"


@dataclass
class ParticleSet:
    """Rows of a particle table, resolved to (stack file, 0-based index) each, with pixel sizes."""

    kind: str                  # "star" | "cs" | "mrcs"
    path: Path                 # the input file
    root: Path                 # image paths in the table are relative to this folder
    stacks: list               # absolute stack paths
    stack_of_row: np.ndarray   # (n,) index into stacks
    index_of_row: np.ndarray   # (n,) 0-based image index within its stack
    pixel_size_A: np.ndarray   # (n,)
    box_px: int
    table: object = None       # DataFrame blocks (star) or cryosparc Dataset (cs)


def _find_root(rel_paths, candidates) -> Path | None:
    for c in candidates:
        if all((c / p).exists() for p in rel_paths):
            return c
    return None


def _resolve(rel_paths: list, input_path: Path, root) -> Path:
    uniq = list(dict.fromkeys(rel_paths))
    probe = uniq[:50]
    if root is not None:
        root = Path(root)
        missing = [p for p in uniq if not (root / p).exists()]
        if missing:
            raise GenemInputError(root / missing[0], "image stack not found")
        return root
    cands = [input_path.parent.resolve(), *input_path.parent.resolve().parents, Path.cwd()]
    found = _find_root(probe, cands)
    if found is None:
        raise GenemInputError(input_path, f"image stack {probe[0]} not found relative to the file or its parent "
                                          "folders (give --root)")
    missing = [p for p in uniq if not (found / p).exists()]
    if missing:
        raise GenemInputError(found / missing[0], "image stack not found")
    return found


def _stack_shape(path: Path):
    try:
        with mrcfile.mmap(path, permissive=True, mode="r") as m:
            shape = m.data.shape
            vs = float(m.voxel_size.x)
    except Exception as e:
        raise GenemInputError(path, f"not a readable MRC stack ({type(e).__name__})") from None
    if len(shape) == 2:
        shape = (1,) + tuple(shape)
    return tuple(int(s) for s in shape), vs


def _check_stacks(stacks, stack_of_row, index_of_row, source) -> int:
    boxes = {}
    for k, s in enumerate(stacks):
        (n, h, w), _ = _stack_shape(s)
        if h != w:
            raise GenemInputError(s, f"images are not square ({h}x{w})")
        idx = index_of_row[stack_of_row == k]
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = int(idx.max() if idx.max() >= n else idx.min())
            raise GenemInputError(source, f"image index {bad + 1} out of range for {s} ({n} images)")
        boxes.setdefault(h, s)
    if len(boxes) > 1:
        (b1, s1), (b2, s2) = list(boxes.items())[:2]
        raise GenemInputError(source, f"box sizes differ: {b1} px ({s1.name}) and {b2} px ({s2.name})")
    return next(iter(boxes)) if boxes else 0


def read_particle_set(path, *, root=None, pixel_size_A: float | None = None) -> ParticleSet:
    """Read and check a particle set; raises GenemInputError with a one-line message on bad input."""
    path = Path(path)
    if not path.exists():
        raise GenemInputError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix == ".star":
        blocks = read_star(path)
        key = "particles" if "particles" in blocks else next((k for k in blocks if k != "optics"), None)
        if key is None:
            raise GenemInputError(path, "no particles block")
        rows = blocks[key]
        if "rlnImageName" not in rows.columns:
            raise GenemInputError(path, "no rlnImageName column (no particle images named)")
        try:
            names = [split_image_name(str(n)) for n in rows["rlnImageName"]]
        except ValueError:
            raise GenemInputError(path, "malformed rlnImageName (expected INDEX@PATH)") from None
        rel = [p for _, p in names]
        index = np.array([i for i, _ in names], dtype=np.int64)
        px = _star_pixel_sizes(blocks.get("optics"), rows, pixel_size_A)
        base = _resolve(rel, path, root)
        table = blocks
    elif suffix == ".cs":
        from genem.io.cs import read_cs

        table = read_cs(path)
        if "blob/path" not in table.fields() or "blob/idx" not in table.fields():
            raise GenemInputError(path, "no blob/path and blob/idx fields (no particle images named)")
        rel = [p.decode() if isinstance(p, bytes) else str(p) for p in table["blob/path"]]
        rel = [p[1:] if p.startswith(">") else p for p in rel]
        index = np.asarray(table["blob/idx"], dtype=np.int64)
        if pixel_size_A is not None:
            px = np.full(len(rel), float(pixel_size_A))
        elif "blob/psize_A" in table.fields():
            px = np.asarray(table["blob/psize_A"], dtype=np.float64)
        else:
            raise GenemInputError(path, "no blob/psize_A field; give --pixel-size-A")
        base = _resolve(rel, path, root)
    elif suffix in (".mrcs", ".mrc"):
        (n, _, _), vs = _stack_shape(path)
        p = pixel_size_A if pixel_size_A is not None else (vs if vs > 0 and abs(vs - 1) > 1e-6 else None)
        if p is None:
            raise GenemInputError(path, "no pixel size in the header; give --pixel-size-A")
        rel, index, px, base, table = [path.name], np.arange(n), np.full(n, float(p)), path.parent.resolve(), None
        rel = rel * n
    else:
        raise GenemInputError(path, "unsupported particle file (expected .star, .cs or .mrcs)")
    if len(index) == 0:
        raise GenemInputError(path, "no particles")
    if not np.all(np.isfinite(px)) or np.any(px <= 0):
        raise GenemInputError(path, "invalid pixel size (give --pixel-size-A)")
    uniq = list(dict.fromkeys(rel))
    pos = {p: k for k, p in enumerate(uniq)}
    stack_of_row = np.array([pos[p] for p in rel], dtype=np.int64)
    stacks = [(base / p) for p in uniq]
    box = _check_stacks(stacks, stack_of_row, index, path)
    kind = {".star": "star", ".cs": "cs"}.get(suffix, "mrcs")
    return ParticleSet(kind, path, base, stacks,
                       stack_of_row, index, px, box, table)


def _star_pixel_sizes(optics, rows, override):
    n = len(rows)
    if override is not None:
        return np.full(n, float(override))
    for col in ("rlnImagePixelSize", "rlnPixelSize"):
        if col in rows.columns:
            return rows[col].to_numpy(np.float64)
    if optics is not None and "rlnOpticsGroup" in rows.columns:
        for col in ("rlnImagePixelSize", "rlnPixelSize"):
            if col in optics.columns:
                lut = dict(zip(optics["rlnOpticsGroup"].astype(int), optics[col].astype(float)))
                return np.array([lut.get(int(g), np.nan) for g in rows["rlnOpticsGroup"]])
    if "rlnDetectorPixelSize" in rows.columns and "rlnMagnification" in rows.columns:
        return rows["rlnDetectorPixelSize"].to_numpy(np.float64) * 1e4 / rows["rlnMagnification"].to_numpy(np.float64)
    return np.full(n, np.nan)


def check_pixel_size(model: Denoiser, pixel_size_A: float, source) -> None:
    if pixel_size_A > MAX_UPSAMPLING * model.pixel_size_A:
        raise GenemInputError(source, f"pixel size {pixel_size_A:.3f} A is coarser than the model's "
                                      f"{model.pixel_size_A:.3f} A by more than {MAX_UPSAMPLING}x; "
                                      "use a model trained at this pixel size")


def model_box(box: int, pixel_size_A: float, model: Denoiser) -> int:
    """Box (even) at the model's pixel size covering the same field of view."""
    b = int(round(box * pixel_size_A / model.pixel_size_A / 2)) * 2
    return max(b, 2 * model.stride)


def denoise_batch(model: Denoiser, images: torch.Tensor, pixel_size_A: float, *, invert_contrast: bool = False,
                  **kw) -> torch.Tensor:
    """Denoise (B, N, N) images at ``pixel_size_A``: resample to the model, normalise, denoise, map back.
    ``invert_contrast`` negates the images before and after (for protein-black particles)."""
    if invert_contrast:
        return -denoise_batch(model, -images, pixel_size_A, **kw)
    n = images.shape[-1]
    nb = model_box(n, pixel_size_A, model)
    x = resample_fourier_2d(images, nb) if nb != n else images
    norm, mean, sd = normalize_images(x)
    out = model.denoise_normalized(norm, **kw).cpu() * sd + mean
    return resample_fourier_2d(out, n) if nb != n else out


def particle_seeds(seed: int, stack_name: str, index0) -> list:
    """One seed per particle from (run seed, stack file name, index): results do not depend on row order or batch."""
    import zlib

    base = zlib.crc32(stack_name.encode()) + (int(seed) << 32)
    return [base * 1_000_003 + int(i) for i in index0]


def _out_names(ps: ParticleSet, out_dir: Path) -> list:
    names = []
    for s in ps.stacks:
        try:
            rel = s.resolve().relative_to(ps.root.resolve())
        except ValueError:
            rel = Path(s.name)
        names.append(out_dir / OUT_STACK_DIR / rel.with_suffix(".mrcs"))
    return names


UNFINISHED_RECORD = "denoise_run.unfinished.json"


def _start_record(out_dir: Path, settings: dict, resume: bool) -> None:
    """Mark ``out_dir`` as holding an unfinished run with these settings, or check that a resumed run has them."""
    rec = out_dir / UNFINISHED_RECORD
    if rec.exists():
        if not resume:
            raise GenemInputError(out_dir, "holds an unfinished run; pass --resume to continue it or choose another --out")
        if json.loads(rec.read_text()) != settings:
            raise GenemInputError(rec, "was started with other settings (input, model, steps, samples, seed); "
                                       "resume with the same ones or choose another --out")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(rec, settings)


def _finished_stack(path: Path, n: int, box: int) -> bool:
    """A stack an interrupted run completed (stacks only get their final name when complete)."""
    if not path.exists():
        return False
    try:
        with mrcfile.mmap(path, mode="r", permissive=True) as m:
            return tuple(m.data.shape) == (n, box, box)
    except Exception:
        return False


def _rel(p: Path, root: Path) -> str:
    return os.path.relpath(p.resolve(), root.resolve())


def denoise_particles(input_path, out_dir, model: Denoiser, *, steps: int | None = None, n_samples: int = 1,
                      postprocess: bool = True, batch_size: int = 64, root=None, pixel_size_A: float | None = None,
                      seed: int = 0, invert_contrast: bool = False, progress: ProgressCallback | None = None,
                      resume: bool = False) -> Path:
    """Denoise a particle set into ``out_dir``; returns the path of the output metadata file.

    Each output stack is complete once it has its final name; until the metadata is written the folder holds
    ``denoise_run.unfinished.json``. An interrupted run keeps its finished stacks and ``resume`` continues it with
    the same settings (per-particle seeds make the result equal to an uninterrupted run)."""
    ps = read_particle_set(input_path, root=root, pixel_size_A=pixel_size_A)
    out_dir = Path(out_dir)
    inp = Path(input_path).resolve()
    if out_dir.resolve() == inp.parent or out_dir.resolve() in [s.parent.resolve() for s in ps.stacks]:
        raise GenemInputError(out_dir, "is an input folder; choose a new --out (inputs are never overwritten)")
    for k, s in enumerate(ps.stacks):
        px = ps.pixel_size_A[ps.stack_of_row == k]
        if np.ptp(px) > 1e-3 * px.max():
            raise GenemInputError(s, "rows of one stack have different pixel sizes")
        check_pixel_size(model, float(px[0]), s)
    out_meta = out_dir / (inp.stem + "_denoised" + inp.suffix if ps.kind != "mrcs" else inp.stem + "_denoised.mrcs")
    if out_meta.exists():
        raise GenemInputError(out_meta, "already exists; choose another --out")
    out_stacks = _out_names(ps, out_dir)
    new_index = np.zeros(len(ps.index_of_row), dtype=np.int64)
    settings = {"input": str(inp), "model": model.weights_digest(), "steps": steps or model.default_steps,
                "n_samples": n_samples, "postprocess": postprocess, "seed": seed, "invert_contrast": invert_contrast,
                "pixel_size_A": pixel_size_A}
    _start_record(out_dir, settings, resume)
    n_total, n_done = len(ps.index_of_row), 0
    report(progress, "denoise", 0, n_total, "ptcl")
    for k, s in enumerate(ps.stacks):
        rows = np.nonzero(ps.stack_of_row == k)[0]
        new_index[rows] = np.arange(len(rows))
        target = out_meta if ps.kind == "mrcs" else out_stacks[k]
        px = float(ps.pixel_size_A[rows[0]])
        if resume and _finished_stack(target, len(rows), ps.box_px):
            n_done += len(rows)
            report(progress, "denoise", n_done, n_total, "ptcl")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            with mrcfile.new_mmap(tmp, shape=(len(rows), ps.box_px, ps.box_px), mrc_mode=2, overwrite=True) as m:
                m.set_image_stack()
                m.voxel_size = px
                for b0 in range(0, len(rows), batch_size):
                    sel = rows[b0:b0 + batch_size]
                    imgs = _read_images(s, ps.index_of_row[sel])
                    seeds = particle_seeds(seed, _rel(s, ps.root), ps.index_of_row[sel])
                    out = denoise_batch(model, torch.from_numpy(imgs), px, steps=steps, n_samples=n_samples,
                                        postprocess=postprocess, seeds=seeds, invert_contrast=invert_contrast)
                    m.data[b0:b0 + len(sel)] = out.numpy()
                    n_done += len(sel)
                    report(progress, "denoise", n_done, n_total, "ptcl")
                m.update_header_stats()
    if ps.kind != "mrcs":  # a bare stack is its own result; tables get new image names and a run record
        _write_particle_table(ps, out_meta, [_rel(out_stacks[k], ps.root) for k in ps.stack_of_row], new_index)
        write_json_atomic(out_dir / "denoise_run.json", {
            "input": str(inp), "output": str(out_meta.resolve()), "n_particles": int(len(new_index)),
            "paths_relative_to": str(ps.root.resolve()), "steps": steps or model.default_steps,
            "n_samples": n_samples, "postprocess": postprocess, "seed": seed, "model": model.meta.get("name", ""),
            "model_pixel_size_A": model.pixel_size_A, "model_digest": settings["model"]})
    (out_dir / UNFINISHED_RECORD).unlink()
    return out_meta


def _write_particle_table(ps: ParticleSet, out_meta: Path, names: list, new_index: np.ndarray) -> None:
    """The input's table (STAR or .cs), every column and row kept, with image names pointing at the new stacks."""
    if ps.kind == "star":
        blocks = {k: v.copy() for k, v in ps.table.items()}
        key = "particles" if "particles" in blocks else next(k for k in blocks if k != "optics")
        blocks[key]["rlnImageName"] = [join_image_name(int(i), n) for i, n in zip(new_index, names)]
        write_star(out_meta, blocks)
        return
    ds = ps.table.copy()
    ds["blob/path"] = np.array(names, dtype=object)
    ds["blob/idx"] = new_index.astype(ds["blob/idx"].dtype)
    with atomic_path(out_meta) as tmp:
        ds.save(str(tmp))


def _read_images(path: Path, idx: np.ndarray) -> np.ndarray:
    with mrcfile.mmap(path, permissive=True, mode="r") as m:
        d = m.data if m.data.ndim == 3 else m.data[None]
        order = np.argsort(idx)
        out = np.empty((len(idx),) + d.shape[1:], np.float32)
        out[order] = d[idx[order]]
    if not np.all(np.isfinite(out)):
        raise GenemInputError(path, "contains NaN or infinite values")
    return out


# ------------------------------------------------------------------------------------------- micrographs
def tile_weights(tile: int, overlap: int) -> torch.Tensor:
    """Separable linear ramps over ``overlap`` pixels at each edge (partition of unity after normalisation)."""
    r = torch.ones(tile)
    if overlap > 0:
        ramp = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
        r[:overlap] = ramp
        r[-overlap:] = ramp.flip(0)
    return r[:, None] * r[None, :]


def denoise_micrograph(model: Denoiser, image: torch.Tensor, pixel_size_A: float, *, tile: int = 256,
                       overlap: int = 32, batch_size: int = 8, invert_contrast: bool = False, **kw) -> torch.Tensor:
    """Denoise one micrograph (H, W) by overlapping tiles at the model's pixel size (memory ~ batch of tiles).
    The model expects protein white (RELION particles after --invert_contrast); ``invert_contrast`` negates the
    image before and after, as raw micrographs (protein black) need."""
    if invert_contrast:
        return -denoise_micrograph(model, -image, pixel_size_A, tile=tile, overlap=overlap, batch_size=batch_size,
                                   **kw)
    h, w = image.shape
    check_pixel_size(model, pixel_size_A, "micrograph")
    scale = pixel_size_A / model.pixel_size_A
    hh, ww = max(int(round(h * scale)), 1), max(int(round(w * scale)), 1)
    x = _resample_rect(image, hh, ww) if (hh, ww) != (h, w) else image
    mean, sd = x.mean(), x.std().clamp_min(1e-8)
    x = (x - mean) / sd
    tile = min(tile, max(hh, ww))
    tile = max(model.stride * 2, tile - tile % model.stride)
    overlap = max(0, min(overlap, tile // 4))
    step = tile - 2 * overlap
    pad_h = max(tile, hh + (-(hh - tile)) % step) if hh > tile else tile
    pad_w = max(tile, ww + (-(ww - tile)) % step) if ww > tile else tile
    xp = torch.nn.functional.pad(x[None, None], (0, pad_w - ww, 0, pad_h - hh), mode="reflect"
                                 if pad_w - ww < ww and pad_h - hh < hh else "replicate")[0, 0]
    acc = torch.zeros_like(xp)
    wsum = torch.zeros_like(xp)
    wt = tile_weights(tile, overlap)
    corners = [(i, j) for i in range(0, pad_h - tile + 1, step) for j in range(0, pad_w - tile + 1, step)]
    for b0 in range(0, len(corners), batch_size):
        cs = corners[b0:b0 + batch_size]
        tiles = torch.stack([xp[i:i + tile, j:j + tile] for i, j in cs])
        out = model.denoise_normalized(tiles, **kw).cpu()
        for (i, j), o in zip(cs, out):
            acc[i:i + tile, j:j + tile] += o * wt
            wsum[i:i + tile, j:j + tile] += wt
    y = (acc / wsum.clamp_min(1e-8))[:hh, :ww] * sd + mean
    return _resample_rect(y, h, w) if (hh, ww) != (h, w) else y


def _resample_rect(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Fourier resampling of a rectangular image to (h, w) (crop or zero-pad the centred spectrum)."""
    H, W = img.shape
    spec = torch.fft.fftshift(torch.fft.fft2(img.double()))
    out = torch.zeros((h, w), dtype=spec.dtype)
    mh, mw = min(H, h), min(W, w)
    out[h // 2 - mh // 2:h // 2 - mh // 2 + mh, w // 2 - mw // 2:w // 2 - mw // 2 + mw] = \
        spec[H // 2 - mh // 2:H // 2 - mh // 2 + mh, W // 2 - mw // 2:W // 2 - mw // 2 + mw]
    return (torch.fft.ifft2(torch.fft.ifftshift(out)).real * (h * w) / (H * W)).float()


def denoise_micrographs(input_path, out_dir, model: Denoiser, *, root=None, pixel_size_A: float | None = None,
                        tile: int = 256, overlap: int = 32, progress: ProgressCallback | None = None,
                        invert_contrast: bool = False,
                        **kw) -> Path:
    """Denoise micrographs named in a STAR (rlnMicrographName) or one .mrc; returns the output STAR or MRC.

    Micrographs are taken to be raw (protein black) and are inverted for the model; ``invert_contrast`` says they
    already have protein white."""
    kw["invert_contrast"] = not invert_contrast
    path = Path(input_path)
    out_dir = Path(out_dir)
    if not path.exists():
        raise GenemInputError(path, "file not found")
    if out_dir.resolve() == path.parent.resolve():
        raise GenemInputError(out_dir, "is an input folder; choose a new --out")
    if path.suffix.lower() in (".mrc", ".mrcs"):
        img, px = read_mrc(path, pixel_size_A=pixel_size_A)
        if px is None:
            raise GenemInputError(path, "no pixel size in the header; give --pixel-size-A")
        if img.ndim != 2:
            raise GenemInputError(path, f"expected one 2D micrograph, got shape {img.shape}")
        out = out_dir / (path.stem + "_denoised.mrc")
        y = denoise_micrograph(model, torch.from_numpy(img), px, tile=tile, overlap=overlap, **kw)
        write_mrc(out, y.numpy(), px)
        return out
    if path.suffix.lower() != ".star":
        raise GenemInputError(path, "unsupported micrograph input (expected .star or .mrc)")
    blocks = read_star(path)
    key = "micrographs" if "micrographs" in blocks else next((k for k in blocks if k != "optics"), None)
    if key is None or "rlnMicrographName" not in blocks[key].columns:
        raise GenemInputError(path, "no rlnMicrographName column")
    rows = blocks[key]
    rel = [str(n) for n in rows["rlnMicrographName"]]
    base = _resolve(rel, path, root)
    optics = blocks.get("optics")
    if pixel_size_A is None:
        if optics is not None and "rlnMicrographPixelSize" in optics.columns:
            lut = dict(zip(optics["rlnOpticsGroup"].astype(int), optics["rlnMicrographPixelSize"].astype(float)))
            pxs = [lut[int(g)] for g in rows["rlnOpticsGroup"]] if "rlnOpticsGroup" in rows else [
                float(optics["rlnMicrographPixelSize"].iloc[0])] * len(rows)
        else:
            pxs = [None] * len(rows)
    else:
        pxs = [pixel_size_A] * len(rows)
    out_star = out_dir / (path.stem + "_denoised.star")
    if out_star.exists():
        raise GenemInputError(out_star, "already exists; choose another --out")
    new_names = []
    report(progress, "micrographs", 0, len(rel), "mic")
    for r, p in zip(rel, pxs):
        img, px = read_mrc(base / r, pixel_size_A=p)
        if px is None:
            raise GenemInputError(base / r, "no pixel size (header or STAR); give --pixel-size-A")
        y = denoise_micrograph(model, torch.from_numpy(img), px, tile=tile, overlap=overlap, **kw)
        target = out_dir / OUT_STACK_DIR / Path(r).name
        write_mrc(target, y.numpy(), px)
        new_names.append(_rel(target, base))
        report(progress, "micrographs", len(new_names), len(rel), "mic")
    blocks = {k: v.copy() for k, v in blocks.items()}
    blocks[key]["rlnMicrographName"] = new_names
    write_star(out_star, blocks)
    return out_star


def remove_stale(out_dir) -> None:
    for p in Path(out_dir).rglob(f"*{TMP_MARK}*"):
        if p.is_file():
            p.unlink()
