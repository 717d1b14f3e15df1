"""Fourier-space metrics: radial averages, radial power spectra and Fourier ring correlation.

All take images (..., H, W) with leading batch dimensions and return one curve per image, indexed by ring
k = 0..min(H, W)//2 (k cycles per box; spatial frequency k / (N * pixel_size_A) in 1/A).
"""
from __future__ import annotations

import torch


def _ring_index(shape, device):
    h, w = shape
    ky = torch.fft.fftfreq(h, device=device) * h
    kx = torch.fft.fftfreq(w, device=device) * w
    # rings in units of the smaller side's frequency step
    n = min(h, w)
    r = torch.sqrt((ky[:, None] * n / h) ** 2 + (kx[None, :] * n / w) ** 2)
    return torch.round(r).long(), n // 2 + 1


def radial_average_2d(values: torch.Tensor, *, centered: bool = False, n_bins: int | None = None) -> torch.Tensor:
    """Mean of ``values`` (..., H, W) over rings of integer radius around the origin.

    ``values`` is on an unshifted fft2 grid (origin at [0, 0]) unless ``centered`` (origin at [H//2, W//2]).
    Returns (..., n_bins) with ``n_bins`` = min(H, W)//2 + 1 by default (rings beyond are dropped).
    """
    v = torch.as_tensor(values)
    if centered:
        v = torch.fft.ifftshift(v, dim=(-2, -1))
    idx, nb = _ring_index(v.shape[-2:], v.device)
    nb = n_bins or nb
    flat = idx.reshape(-1)
    keep = flat < nb
    lead = v.shape[:-2]
    vf = v.reshape(-1, flat.numel())[:, keep]
    fi = flat[keep]
    dtype = vf.dtype if not vf.is_complex() else vf.dtype
    sums = torch.zeros(vf.shape[0], nb, dtype=dtype, device=v.device).index_add_(1, fi, vf)
    counts = torch.zeros(nb, dtype=torch.float64, device=v.device).index_add_(
        0, fi, torch.ones_like(fi, dtype=torch.float64))
    out = sums / counts.clamp_min(1).to(sums.real.dtype if sums.is_complex() else sums.dtype)
    return out.reshape(lead + (nb,))


def radial_power_spectrum_2d(images: torch.Tensor) -> torch.Tensor:
    """Rotationally averaged power |F|^2 / (H W) of each image (..., H, W) -> (..., min(H, W)//2 + 1)."""
    x = torch.as_tensor(images, dtype=torch.float64)
    p = torch.fft.fft2(x).abs() ** 2 / (x.shape[-1] * x.shape[-2])
    return radial_average_2d(p)


def frc(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Fourier ring correlation (Saxton & Baumeister 1982) of image pairs (..., H, W) -> (..., min(H, W)//2 + 1):
    FRC(k) = Re sum_ring F_a conj(F_b) / sqrt(sum_ring |F_a|^2 sum_ring |F_b|^2)."""
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    fa, fb = torch.fft.fft2(a), torch.fft.fft2(b)
    num = radial_average_2d((fa * fb.conj()).real)
    da = radial_average_2d(fa.abs() ** 2)
    db = radial_average_2d(fb.abs() ** 2)
    return num / torch.sqrt(da * db).clamp_min(1e-30)
