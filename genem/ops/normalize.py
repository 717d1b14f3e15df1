"""Per-image normalisation: over the whole image (micrographs, tiles), or over the background only as RELION's
``relion_preprocess --norm --no_ramp --bg_radius R`` does it (particles).

The background is every pixel at distance > R from the box centre (index (H//2, W//2)); R defaults to 75 % of
the half box, 0.375 * min(H, W). Each image has its background mean subtracted and is divided by its background
standard deviation (the population sd, as RELION computes it), so the noise has unit variance. Checked against
relion_preprocess 3.1.3 (``r > R``, population sd): equal to float32 rounding. RELION's Extract job with the
default background diameter passes R = floor(0.375 * box) (box 100 -> 37, 90 -> 33, 66 -> 24): the same mask when
the box is a multiple of 8 (the simulator's default box 128, the shipped denoiser's 64); for other boxes RELION's
background also holds the ring floor(R) < r <= R. RELION by default also subtracts a fitted ramp; GenEM never does.
"""
from __future__ import annotations

import numpy as np
import torch

BG_RADIUS_FRACTION = 0.75  # of the half box: RELION's default background radius


def background_mask_2d(shape_hw, bg_radius_px: float | None = None, device=None) -> torch.Tensor:
    """Boolean (H, W) mask of the background: pixels at distance > ``bg_radius_px`` from (H//2, W//2)."""
    h, w = shape_hw
    if bg_radius_px is None:
        bg_radius_px = BG_RADIUS_FRACTION * min(h, w) / 2
    y = torch.arange(h, device=device) - h // 2
    x = torch.arange(w, device=device) - w // 2
    return y[:, None] ** 2 + x[None, :] ** 2 > bg_radius_px ** 2


def background_stats_2d(images, bg_radius_px: float | None = None):
    """(mean, sd) of the background of each image (..., H, W), each (..., 1, 1), in the images' type and dtype
    (numpy arrays get numpy's arithmetic, so datasets written from numpy stay bit-stable); a flat background gets
    sd 1, so it is only shifted."""
    is_numpy = isinstance(images, np.ndarray)
    mask = background_mask_2d(images.shape[-2:], bg_radius_px, None if is_numpy else images.device)
    bg = images[..., mask.numpy() if is_numpy else mask]
    mean = bg.mean(-1)[..., None]
    sd = (((bg - mean) ** 2).mean(-1) ** 0.5)[..., None, None]
    sd = np.where(sd > 0, sd, 1.0) if is_numpy else torch.where(sd > 0, sd, torch.ones_like(sd))
    return mean[..., None], sd


def normalize_background_2d(images, bg_radius_px: float | None = None):
    """RELION normalisation of images (..., H, W); returns (normalised, mean, sd) with images = norm * sd + mean."""
    mean, sd = background_stats_2d(images, bg_radius_px)
    return (images - mean) / sd, mean, sd


def normalize_background_pair_2d(noisy, clean, bg_radius_px: float | None = None):
    """Normalise noisy images and put their clean twins on the same scale: each twin has its own background mean
    subtracted and is divided by the *noisy* image's background sd, so (noisy_norm - clean_norm) is the noise in
    the noisy image's units."""
    n, _, sd = normalize_background_2d(noisy, bg_radius_px)
    cmean, _ = background_stats_2d(clean, bg_radius_px)
    return n, (clean - cmean) / sd


def normalize_image_2d(images):
    """Zero mean and unit (population) sd over the whole of each image (..., H, W); returns (normalised, mean, sd),
    statistics in float64, the normalised images in the input's dtype. A constant image becomes zeros (sd 1)."""
    is_numpy = isinstance(images, np.ndarray)
    x = images.astype(np.float64) if is_numpy else images.to(torch.float64)
    mean = x.mean((-2, -1))[..., None, None]
    sd = ((x - mean) ** 2).mean((-2, -1))[..., None, None] ** 0.5
    sd = np.where(sd > 0, sd, 1.0) if is_numpy else torch.where(sd > 0, sd, torch.ones_like(sd))
    out = (x - mean) / sd
    return out.astype(images.dtype) if is_numpy else out.to(images.dtype), mean, sd


def robust_location_scale(values) -> tuple[float, float]:
    """``(median, 1.4826 x median absolute deviation)`` of ``values`` (numpy, any shape): the location and the
    Gaussian-consistent scale that one bright speck or a dark contamination cannot move. The scale is 0 for data
    whose values are mostly equal; callers choose their own fallback."""
    x = np.asarray(values)
    med = float(np.median(x))
    return med, 1.4826 * float(np.median(np.abs(x - med)))


def fit_background_trend_2d(image, block_px: int | None = None) -> np.ndarray:
    """The slow background of one image (H, W): a quadratic surface (1, x, y, xy, x^2, y^2) least-squares fitted
    to the image averaged in ``block_px`` blocks (default: ~32 blocks along the shorter side), evaluated at every
    pixel (float64 numpy)."""
    x = np.asarray(image, np.float64)
    h, w = x.shape
    b = block_px or max(1, min(h, w) // 32)
    blocks = x[: h // b * b, : w // b * b].reshape(h // b, b, w // b, b).mean(axis=(1, 3))

    def basis(rows, cols):  # block centres in the full image's [-1, 1] coordinates
        yy, xx = np.meshgrid(rows / max(h - 1, 1) * 2 - 1, cols / max(w - 1, 1) * 2 - 1, indexing="ij")
        return np.stack([np.ones_like(xx), xx, yy, xx * yy, xx ** 2, yy ** 2], -1)

    centres = (np.arange(blocks.shape[0]) * b + (b - 1) / 2, np.arange(blocks.shape[1]) * b + (b - 1) / 2)
    coef, *_ = np.linalg.lstsq(basis(*centres).reshape(-1, 6), blocks.ravel(), rcond=None)
    return basis(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)) @ coef
