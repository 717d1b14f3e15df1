"""Micrographs as they come, for picking: MRC of any dtype or 8-bit PNG/TIFF renders, their pixel sizes, and
the one place where they are Fourier-binned to the picker's pixel size and normalised.

Coordinates: ``(x, y)`` = (column, row), 0-based pixels, as RELION's rlnCoordinateX/Y.
"""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genem.io import GenemInputError, read_star
from genem.io.images import probe_image
from genem.io.star import merge_optics
from genem.ops import resample_fourier_2d, robust_location_scale


@dataclass(frozen=True)
class MicrographInput:
    """One micrograph to pick: ``name`` as the user gave it (or as rlnMicrographName), ``path`` on disk."""

    name: str
    path: Path
    pixel_size_A: float | None

    @property
    def stem(self) -> str:
        return self.path.stem


def expand_paths(items, what: str = "micrographs") -> list[Path]:
    """Files, folders (every file inside, sorted) and glob patterns, in the order given."""
    out: list[Path] = []
    for item in items:
        s = str(item)
        if any(c in s for c in "*?["):
            hits = sorted(glob.glob(s))
            if not hits:
                raise GenemInputError(s, f"no {what} match this pattern")
            out += [Path(h) for h in hits]
        elif Path(s).is_dir():
            out += sorted(p for p in Path(s).iterdir() if p.is_file() and not p.name.startswith("."))
        else:
            out.append(Path(s))
    return out


def collect_micrographs(items, *, pixel_size_A: float | None = None) -> list[MicrographInput]:
    """Micrographs from a micrographs STAR (rlnMicrographName; paths relative to the STAR's folder or to the
    current folder, RELION's project directory), or from files / folders / glob patterns. Pixel size: the flag,
    else the STAR's optics (rlnMicrographPixelSize), else the MRC header; none of these is an error. Every file is
    checked before anything is written."""
    items = [str(i) for i in (items if isinstance(items, (list, tuple)) else [items])]
    mics: list[MicrographInput] = []
    if len(items) == 1 and items[0].endswith(".star"):
        star = Path(items[0])
        blocks = read_star(star)
        rows = blocks.get("micrographs")
        if rows is None:
            rows = next((v for k, v in blocks.items() if "rlnMicrographName" in v.columns), None)
        if rows is None or "rlnMicrographName" not in rows.columns:
            raise GenemInputError(star, "no rlnMicrographName column (not a micrographs STAR)")
        rows = merge_optics(blocks.get("optics"), rows)
        for _, r in rows.iterrows():
            name = str(r["rlnMicrographName"])
            cand = [star.parent / name, Path(name)]
            path = next((c for c in cand if c.is_file()), None)
            if path is None:
                raise GenemInputError(star, f"micrograph {name} not found (beside the STAR or in the current folder)")
            px = pixel_size_A
            for col in ("rlnMicrographPixelSize", "rlnImagePixelSize"):
                if px is None and col in r.index and np.isfinite(float(r[col])) and float(r[col]) > 0:
                    px = float(r[col])
            mics.append(MicrographInput(name, path, px))
    else:
        for p in expand_paths(items):
            mics.append(MicrographInput(str(p), p, pixel_size_A))
    if not mics:
        raise GenemInputError(" ".join(items) or "--micrographs", "no micrographs given")
    out, stems = [], {}
    for m in mics:
        if m.stem in stems:
            raise GenemInputError(m.path, f"same file name as {stems[m.stem]}: picks are named by micrograph stem")
        stems[m.stem] = m.path
        _, header_px = probe_image(m.path)
        px = m.pixel_size_A if m.pixel_size_A is not None else header_px
        if px is None:
            raise GenemInputError(m.path, "no pixel size (not in a STAR, not in the header): give --pixel-size-A")
        out.append(MicrographInput(m.name, m.path, float(px)))
    return out


def fourier_bin(image: np.ndarray, pixel_size_A: float, target_pixel_size_A: float) -> tuple[np.ndarray, tuple]:
    """Resample ``image`` to ``target_pixel_size_A`` by cropping (or padding) its spectrum. Returns the binned
    image and ``(scale_y, scale_x)``: input pixels per output pixel, so that input ``x = x_binned * scale_x``
    (pixel 0 stays pixel 0 in this resampling)."""
    h, w = image.shape
    f = float(pixel_size_A) / float(target_pixel_size_A)
    nh, nw = max(8, int(round(h * f))), max(8, int(round(w * f)))
    if (nh, nw) == (h, w):
        return image.astype(np.float32), (1.0, 1.0)
    out = resample_fourier_2d(np.ascontiguousarray(image, dtype=np.float32), (nh, nw), centered=False)
    return out.astype(np.float32), (h / nh, w / nw)


def normalize_micrograph(image: np.ndarray) -> np.ndarray:
    """Zero median, unit robust standard deviation (1.4826 MAD), clipped to +-8: one bright speck or a dark
    contamination cannot set the scale."""
    med, mad = robust_location_scale(image)
    sd = mad if mad > 1e-8 else float(image.std()) or 1.0
    return np.clip((image - med) / sd, -8.0, 8.0).astype(np.float32)


def prepare_micrograph(image: np.ndarray, pixel_size_A: float, target_pixel_size_A: float):
    """Binned and normalised image at the picker's pixel size, and the (scale_y, scale_x) back to input pixels."""
    binned, scale = fourier_bin(image, pixel_size_A, target_pixel_size_A)
    return normalize_micrograph(binned), scale
