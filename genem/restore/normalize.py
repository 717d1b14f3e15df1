"""Per-image normalisation as RELION's ``relion_preprocess --norm`` does it, and resampling between pixel sizes.

RELION subtracts the mean of the background (pixels outside a circle of radius ``bg_radius`` px around the box
centre, index N//2) and divides by the background standard deviation, so the noise has unit variance. A clean
twin is put on the same scale: its own background mean is subtracted and it is divided by the *noisy* image's
background sd, so that (noisy_norm - clean_norm) is the noise in the noisy image's units.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_BG_FRACTION = 0.75  # RELION's GUI default: background radius = 75% of the box half-size


def background_mask(shape, bg_radius_px: float | None = None, device=None) -> torch.Tensor:
    """Boolean (H, W) mask of pixels at distance > ``bg_radius_px`` from (H//2, W//2)."""
    h, w = shape
    if bg_radius_px is None:
        bg_radius_px = DEFAULT_BG_FRACTION * min(h, w) / 2
    y = torch.arange(h, device=device) - h // 2
    x = torch.arange(w, device=device) - w // 2
    r2 = y[:, None] ** 2 + x[None, :] ** 2
    return r2 > bg_radius_px ** 2


def background_stats(images: torch.Tensor, bg_radius_px: float | None = None):
    """(mean, sd) of the background of each image of ``images`` (..., H, W); each (..., 1, 1)."""
    m = background_mask(images.shape[-2:], bg_radius_px, images.device)
    bg = images[..., m]
    mean = bg.mean(-1)[..., None, None]
    sd = bg.std(-1)[..., None, None].clamp_min(1e-8)
    return mean, sd


def normalize_images(images: torch.Tensor, bg_radius_px: float | None = None):
    """RELION normalisation of (..., H, W); returns (normalised, mean, sd) so that images = norm * sd + mean."""
    mean, sd = background_stats(images, bg_radius_px)
    return (images - mean) / sd, mean, sd


def normalize_pair(noisy: torch.Tensor, clean: torch.Tensor, bg_radius_px: float | None = None):
    """Normalise a noisy image and put its clean twin on the same scale (see the module docstring)."""
    n, _, sd = normalize_images(noisy, bg_radius_px)
    cmean, _ = background_stats(clean, bg_radius_px)
    return n, (clean - cmean) / sd


def resample_fourier_2d(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resample square images (..., N, N) to (..., size, size) by cropping or zero-padding the centred spectrum.

    Keeps pixel values (not sums): the physical field of view is unchanged, so the new pixel size is
    old * N / size. The box centre N//2 maps to size//2.
    """
    n = images.shape[-1]
    if images.shape[-2] != n:
        raise ValueError("resample_fourier_2d needs square images")
    if size == n:
        return images
    spec = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(images, dim=(-2, -1))), dim=(-2, -1))
    out = torch.zeros(images.shape[:-2] + (size, size), dtype=spec.dtype, device=images.device)
    m = min(n, size)
    so, oo = n // 2 - m // 2, size // 2 - m // 2
    out[..., oo:oo + m, oo:oo + m] = spec[..., so:so + m, so:so + m]
    res = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(out, dim=(-2, -1))), dim=(-2, -1)).real
    return res * (size / n) ** 2


def pad_to_multiple(images: torch.Tensor, multiple: int, mode: str = "reflect"):
    """Pad (..., H, W) on the bottom/right to multiples of ``multiple``; returns (padded, (H, W))."""
    h, w = images.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return images, (h, w)
    lead = images.shape[:-2]
    x = images.reshape(-1, 1, h, w)
    mode = mode if (ph < h and pw < w) else "replicate"
    x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x.reshape(lead + x.shape[-2:]), (h, w)
