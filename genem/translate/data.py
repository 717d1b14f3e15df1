"""Micrographs for noise translation: real micrographs as they come, simulated ones from a dataset folder.

Real micrographs arrive as uint16 / float16 / float32 MRC of any size. ``prepare_real_micrograph`` clips hot
pixels and outliers (robust median +- k * MAD-sigma), Fourier-crops to the simulation's pixel size
(:func:`genem.ops.resample_fourier_2d`) and normalises to zero mean and unit variance. Simulated micrographs get
the same clipping and normalisation (no resampling), so both domains meet the networks on the same scale, and lose
their slow background (a quadratic surface).
"""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genem.io import GenemDataset, GenemInputError, read_mrc
from genem.io.dataset import MICROGRAPHS_STAR
from genem.io.images import read_image, stored_dtype
from genem.ops import fit_background_trend_2d, normalize_image_2d, resample_fourier_2d, robust_location_scale

PIXEL_SIZE_RTOL = 0.01  # pixel sizes within 1 % count as equal (no resampling)


def robust_clip_image(image: np.ndarray, k_sigma: float = 6.0, *, sample: int = 1_000_000,
                      seed: int = 0) -> np.ndarray:
    """Clip hot pixels and outliers to median +- ``k_sigma`` robust sigmas (1.4826 * MAD) of ``image`` (..., H, W).

    The statistics come from at most ``sample`` pixels (a fixed random subset), so 4096^2 frames stay cheap.
    """
    x = np.asarray(image, dtype=np.float32)
    flat = x.reshape(-1)
    if flat.size > sample:
        idx = np.random.default_rng(seed).choice(flat.size, sample, replace=False)
        flat = flat[idx]
    med, sigma = robust_location_scale(flat)
    if sigma <= 0:  # e.g. sparse counting frames: fall back to the plain standard deviation
        sigma = float(flat.std())
    if sigma <= 0:
        return x.copy()
    return np.clip(x, med - k_sigma * sigma, med + k_sigma * sigma)


@dataclass(frozen=True)
class RealMicrograph:
    """A real micrograph ready for translation: clipped, resampled to ``pixel_size_A``, normalised."""

    path: str
    image: np.ndarray          # (H, W) float32, mean 0, std 1
    pixel_size_A: float        # after resampling (equals the simulation's within rounding)
    source_pixel_size_A: float
    source_shape: tuple[int, int]
    source_dtype: str


def read_micrograph_any(path) -> tuple[np.ndarray, float | None, str]:
    """Read a 2D micrograph (MRC of any mode, or an 8-bit PNG/TIFF render); return ``(float32 (H, W), header pixel
    size or None, stored dtype name)``."""
    path = Path(path)
    data, px = read_image(path)
    if min(data.shape) < 16:
        raise GenemInputError(path, f"micrograph of shape {data.shape} is too small")
    return data, px, stored_dtype(path)


def prepare_real_micrograph(path, target_pixel_size_A: float, *, pixel_size_A: float | None = None,
                            clip_sigma: float = 6.0) -> RealMicrograph:
    """Load a real micrograph and bring it to the simulation's pixel size and scale.

    ``pixel_size_A`` overrides the header. A real pixel size coarser than the target cannot be matched (that
    would invent frequencies the detector never recorded) and raises ``GenemInputError``.
    """
    path = Path(path)
    raw, header_px, dtype = read_micrograph_any(path)
    px = pixel_size_A if pixel_size_A is not None else header_px
    if px is None or not px > 0:
        raise GenemInputError(path, "pixel size unknown (header has none); pass the real pixel size explicitly")
    target = float(target_pixel_size_A)
    ratio = px / target  # < 1: real pixels are finer; we shrink by this factor
    if ratio > 1 + PIXEL_SIZE_RTOL:
        raise GenemInputError(path, f"real pixel size {px:.4g} A is coarser than the simulation's {target:.4g} A; "
                                    "cannot be matched (simulate at >= the real pixel size)")
    x = robust_clip_image(raw, clip_sigma)
    if ratio < 1 - PIXEL_SIZE_RTOL:
        shape_out = (max(1, int(round(x.shape[0] * ratio))), max(1, int(round(x.shape[1] * ratio))))
        x = resample_fourier_2d(x, shape_out, centered=False)  # coordinates scale: pixel 0 stays fixed
        px_out = px * raw.shape[1] / shape_out[1]
    else:
        px_out = px
    return RealMicrograph(str(path), normalize_image_2d(x)[0], float(px_out), float(px), tuple(raw.shape), dtype)


def prepare_simulated_micrograph(image: np.ndarray, clip_sigma: float = 6.0, *, flatten: bool = False) -> np.ndarray:
    """Clip and normalise a simulated micrograph the same way as a real one (no resampling). ``flatten``
    subtracts its slow background first (:func:`genem.ops.fit_background_trend_2d`): the translator's input, whose
    generator is local (a ~45 px reach) and could only carry a simulated ice gradient over, amplified, into an
    intensity drift that real micrographs lack."""
    x = robust_clip_image(image, clip_sigma)
    if flatten:
        x = x - fit_background_trend_2d(x).astype(np.float32)
    return normalize_image_2d(x)[0]


def expand_real_paths(patterns) -> list[Path]:
    """Expand files, folders (their *.mrc) and glob patterns; raise when nothing matches."""
    if isinstance(patterns, (str, Path)):
        patterns = [patterns]
    out: list[Path] = []
    for pat in patterns:
        p = Path(pat)
        if p.is_dir():
            out.extend(sorted(p.glob("*.mrc")))
        elif p.exists():
            out.append(p)
        else:
            out.extend(Path(q) for q in sorted(glob.glob(str(pat))))
    seen, uniq = set(), []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            uniq.append(p)
    if not uniq:
        raise GenemInputError(", ".join(str(p) for p in patterns), "no real micrographs found")
    return uniq


@dataclass(frozen=True)
class SimulatedSet:
    """Simulated micrographs (normalised) with their particle masks, read from a GenEM dataset folder."""

    root: str
    names: tuple[str, ...]
    images: tuple[np.ndarray, ...]   # each (H, W) float32 normalised
    masks: tuple[np.ndarray, ...]    # each (H, W) bool, True on particles
    pixel_size_A: float


def load_simulated_set(root, *, clip_sigma: float = 6.0, max_micrographs: int | None = None,
                       need_masks: bool = True) -> SimulatedSet:
    """Read a simulated dataset's noisy micrographs and particle masks (``Masks/``)."""
    ds = GenemDataset.open(root)
    mics = ds.micrographs()
    if "rlnMicrographName" not in mics.columns or len(mics) == 0:
        raise GenemInputError(Path(root) / MICROGRAPHS_STAR, "no micrographs listed")
    names = list(mics["rlnMicrographName"])
    if max_micrographs is not None:
        names = names[: int(max_micrographs)]
    images, masks = [], []
    for name in names:
        img = ds.read_micrograph(name, "noisy")
        if img.ndim == 3 and img.shape[0] == 1:
            img = img[0]
        images.append(prepare_simulated_micrograph(img, clip_sigma, flatten=True))
        mpath = ds.micrograph_path(name, "mask")
        if not mpath.exists():
            if need_masks:
                raise GenemInputError(mpath, "particle mask missing: the simulated folder has no Masks/ "
                                             "(simulate with masks, they guide PatchNCE sampling)")
            masks.append(np.zeros(img.shape, bool))
            continue
        m = read_mrc(mpath)[0]
        if m.ndim == 3 and m.shape[0] == 1:
            m = m[0]
        if m.shape != img.shape:
            raise GenemInputError(mpath, f"mask shape {m.shape} differs from its micrograph's {img.shape}")
        masks.append(m > 0)
    return SimulatedSet(str(root), tuple(names), tuple(images), tuple(masks), ds.pixel_size_A)


def sample_tiles(images, tile_px: int, n: int, rng: np.random.Generator, *, masks=None,
                 column_ranges=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw ``n`` random ``tile_px`` square tiles (and the matching mask tiles) from a list of (H, W) images.

    ``column_ranges[i] = (c0, c1)`` restricts image i's tiles to columns [c0, c1) (the training part of a real
    micrograph whose right-hand strip is held out). Returns ``(tiles (n, T, T), mask tiles (n, T, T) or None)``.
    """
    t = int(tile_px)
    tiles = np.empty((n, t, t), np.float32)
    mtiles = np.empty((n, t, t), bool) if masks is not None else None
    which = rng.integers(0, len(images), n)
    for k, i in enumerate(which):
        img = images[i]
        h, w = img.shape
        c0, c1 = column_ranges[i] if column_ranges is not None else (0, w)
        if h < t or c1 - c0 < t:
            raise ValueError(f"image {i} ({h}x{c1 - c0} usable) is smaller than the tile size {t}")
        r = int(rng.integers(0, h - t + 1))
        c = int(rng.integers(c0, c1 - t + 1))
        tiles[k] = img[r:r + t, c:c + t]
        if mtiles is not None:
            mtiles[k] = masks[i][r:r + t, c:c + t]
    return tiles, mtiles


def grid_tiles(image: np.ndarray, tile_px: int) -> np.ndarray:
    """Non-overlapping ``tile_px`` tiles covering ``image`` (H, W) from its top-left corner: (n, T, T)."""
    t = int(tile_px)
    h, w = image.shape[-2:]
    nr, nc = h // t, w // t
    if nr == 0 or nc == 0:
        return np.zeros((0, t, t), np.float32)
    x = np.asarray(image[..., : nr * t, : nc * t], np.float32)
    return x.reshape(nr, t, nc, t).transpose(0, 2, 1, 3).reshape(nr * nc, t, t)
