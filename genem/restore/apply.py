"""Apply a trained denoiser to particle sets (RELION STAR, cryoSPARC .cs, bare .mrcs) and micrographs.

Particles are streamed: the particle set is read and checked once (:mod:`genem.io.particles`: every stack exists,
indices in range, one box size) before anything is written, then each stack is denoised in batches into a
memory-mapped temporary file that is renamed onto its final name only when complete; the metadata file (same
format, same row order, every other column kept, image names pointing at the new stacks) is written last. Memory is
one batch of images plus the table, whatever the stack size. Paths in the output table are written relative to the
same root the input's paths were resolved against (the RELION / cryoSPARC project directory).

Geometry: particles are resampled in Fourier space to the model's pixel size (:meth:`Denoiser.box_for`), padded to
the U-Net's stride, RELION-normalised (background mean/sd), denoised, and mapped back to the input box, pixel size
and intensity scale.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from genem.io import GenemInputError, read_mrc, write_json_atomic, write_mrc, write_star
from genem.io.atomic import atomic_path, remove_stale_temporaries
from genem.io.mrc import new_stack_mmap, read_stack_shape
from genem.io.particles import ParticleSet, read_micrograph_table, read_particle_set, write_particle_table
from genem.ops import (blend_tiles_2d, blend_window_1d, normalize_background_2d, normalize_image_2d,
                       resample_fourier_2d)
from genem.progress import ProgressCallback, report

from .model import Denoiser

OUT_STACK_DIR = "Denoised"


def denoise_batch(model: Denoiser, images: torch.Tensor, pixel_size_A: float, *, invert_contrast: bool = False,
                  **kw) -> torch.Tensor:
    """Denoise (B, N, N) images at ``pixel_size_A``: resample to the model, normalise, denoise, map back.
    ``invert_contrast`` negates the images before and after (for protein-black particles)."""
    if invert_contrast:
        return -denoise_batch(model, -images, pixel_size_A, **kw)
    n = images.shape[-1]
    nb = model.box_for(n, pixel_size_A)
    x = resample_fourier_2d(images, nb) if nb != n else images
    norm, mean, sd = normalize_background_2d(x)
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
        remove_stale_temporaries(out_dir)  # what a killed run left (an interrupted one cleans up itself)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(rec, settings)


def _finished_stack(path: Path, n: int, box: int) -> bool:
    """A stack an interrupted run completed (stacks only get their final name when complete)."""
    if not path.exists():
        return False
    try:
        return read_stack_shape(path)[0] == (n, box, box)
    except GenemInputError:
        return False


def _rel(p: Path, root: Path) -> str:
    return os.path.relpath(p.resolve(), root.resolve())


def denoise_particles(input_path, out_dir, model: Denoiser, *, steps: int | None = None, n_samples: int = 1,
                      postprocess: bool | None = None, batch_size: int = 64, root=None,
                      pixel_size_A: float | None = None,
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
        model.check_pixel_size(ps.stack_pixel_size_A(k), s)
    out_meta = out_dir / (inp.stem + "_denoised" + inp.suffix if ps.kind != "mrcs" else inp.stem + "_denoised.mrcs")
    if out_meta.exists():
        raise GenemInputError(out_meta, "already exists; choose another --out")
    out_stacks = _out_names(ps, out_dir)
    new_index = np.zeros(len(ps.index_of_row), dtype=np.int64)
    postprocess = model.uses_postprocess(steps, postprocess)
    steps = model.default_steps if steps is None else steps
    settings = {"input": str(inp), "model": model.weights_digest(), "steps": steps,
                "n_samples": n_samples, "postprocess": postprocess, "seed": seed, "invert_contrast": invert_contrast,
                "pixel_size_A": pixel_size_A}
    _start_record(out_dir, settings, resume)
    n_total, n_done = len(ps.index_of_row), 0
    report(progress, "denoise", 0, n_total, "ptcl")
    for k, s in enumerate(ps.stacks):
        rows = ps.rows_of_stack(k)
        new_index[rows] = np.arange(len(rows))
        target = out_meta if ps.kind == "mrcs" else out_stacks[k]
        px = ps.stack_pixel_size_A(k)
        if resume and _finished_stack(target, len(rows), ps.box_px):
            n_done += len(rows)
            report(progress, "denoise", n_done, n_total, "ptcl")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            with new_stack_mmap(tmp, (len(rows), ps.box_px, ps.box_px), px) as data:
                for b0 in range(0, len(rows), batch_size):
                    sel = rows[b0:b0 + batch_size]
                    imgs = ps.read_images(k, sel)
                    seeds = particle_seeds(seed, _rel(s, ps.root), ps.index_of_row[sel])
                    out = denoise_batch(model, torch.from_numpy(imgs), px, steps=steps, n_samples=n_samples,
                                        postprocess=postprocess, seeds=seeds, invert_contrast=invert_contrast)
                    data[b0:b0 + len(sel)] = out.numpy()
                    n_done += len(sel)
                    report(progress, "denoise", n_done, n_total, "ptcl")
    if ps.kind != "mrcs":  # a bare stack is its own result; tables get new image names and a run record
        write_particle_table(ps, out_meta, [_rel(out_stacks[k], ps.root) for k in ps.stack_of_row], new_index)
        write_json_atomic(out_dir / "denoise_run.json", {
            "input": str(inp), "output": str(out_meta.resolve()), "n_particles": int(len(new_index)),
            "paths_relative_to": str(ps.root.resolve()), "steps": steps,
            "n_samples": n_samples, "postprocess": postprocess, "seed": seed, "model": model.meta.get("name", ""),
            "model_pixel_size_A": model.pixel_size_A, "model_digest": settings["model"]})
    (out_dir / UNFINISHED_RECORD).unlink()
    return out_meta


# ------------------------------------------------------------------------------------------- micrographs
def denoise_micrograph(model: Denoiser, image: torch.Tensor, pixel_size_A: float, *, tile: int = 512,
                       overlap: int = 32, batch_size: int = 1, invert_contrast: bool = False, **kw) -> torch.Tensor:
    """Denoise one micrograph (H, W) by overlapping tiles at the model's pixel size (memory: the micrograph, the
    blending sums and one batch of tiles' activations, ~0.35 GiB per 512^2 tile; 512-px tiles with 32-px ramps
    on large images recompute ~31% of the pixels, 256-px ones ~78%).
    Tiles are blended with linear ramps over ``overlap`` px at their edges. The model expects protein white
    (RELION particles after --invert_contrast); ``invert_contrast`` negates the image before and after, as raw
    micrographs (protein black) need."""
    if invert_contrast:
        return -denoise_micrograph(model, -image, pixel_size_A, tile=tile, overlap=overlap, batch_size=batch_size,
                                   **kw)
    h, w = image.shape
    scale = pixel_size_A / model.pixel_size_A
    hh, ww = max(int(round(h * scale)), 1), max(int(round(w * scale)), 1)
    # micrograph coordinates scale with the pixel size: pixel 0 stays fixed (centered=False)
    x = resample_fourier_2d(image, (hh, ww), centered=False) if (hh, ww) != (h, w) else image
    x, mean, sd = normalize_image_2d(x)
    tile = min(tile, max(hh, ww))
    tile = max(model.stride * 2, tile - tile % model.stride)
    overlap = max(0, min(overlap, tile // 4))
    win = blend_window_1d(tile, 0, overlap, ramp="linear")
    y = blend_tiles_2d(lambda t: model.denoise_normalized(t, **kw), x, tile_hw=(tile, tile),
                       step_hw=(tile - 2 * overlap,) * 2, window_hw=(win, win), batch_size=batch_size)
    y = (y * sd + mean).to(image.dtype)
    return resample_fourier_2d(y, (h, w), centered=False) if (hh, ww) != (h, w) else y


def denoise_micrographs(input_path, out_dir, model: Denoiser, *, root=None, pixel_size_A: float | None = None,
                        tile: int = 512, overlap: int = 32, progress: ProgressCallback | None = None,
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
        model.check_pixel_size(px, path)
        out = out_dir / (path.stem + "_denoised.mrc")
        y = denoise_micrograph(model, torch.from_numpy(img), px, tile=tile, overlap=overlap, **kw)
        write_mrc(out, y.numpy(), px)
        return out
    if path.suffix.lower() != ".star":
        raise GenemInputError(path, "unsupported micrograph input (expected .star or .mrc)")
    mics = read_micrograph_table(path, root=root, pixel_size_A=pixel_size_A)
    rel, pxs, base = mics.names, mics.pixel_size_A, mics.root
    out_star = out_dir / (path.stem + "_denoised.star")
    if out_star.exists():
        raise GenemInputError(out_star, "already exists; choose another --out")
    new_names = []
    report(progress, "micrographs", 0, len(rel), "mic")
    for r, p in zip(rel, pxs):
        img, px = read_mrc(base / r, pixel_size_A=p)
        if px is None:
            raise GenemInputError(base / r, "no pixel size (header or STAR); give --pixel-size-A")
        model.check_pixel_size(px, base / r)
        y = denoise_micrograph(model, torch.from_numpy(img), px, tile=tile, overlap=overlap, **kw)
        target = out_dir / OUT_STACK_DIR / Path(r).name
        write_mrc(target, y.numpy(), px)
        new_names.append(_rel(target, base))
        report(progress, "micrographs", len(new_names), len(rel), "mic")
    write_star(out_star, mics.with_names(new_names))
    return out_star

