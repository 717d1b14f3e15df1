"""Fourier ring correlation of image pairs with leading batch dimensions (radial averages: :mod:`genem.ops`)."""
from __future__ import annotations

import torch

from genem.ops import radial_average_2d


def frc(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Fourier ring correlation (Saxton & Baumeister 1982) of image pairs (..., H, W) -> (..., min(H, W)//2 + 1):
    FRC(k) = Re sum_ring F_a conj(F_b) / sqrt(sum_ring |F_a|^2 sum_ring |F_b|^2), ring k at k cycles per box
    (spatial frequency k / (N * pixel_size_A) in 1/A)."""
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    fa, fb = torch.fft.fft2(a), torch.fft.fft2(b)
    num = radial_average_2d((fa * fb.conj()).real)
    da = radial_average_2d(fa.abs() ** 2)
    db = radial_average_2d(fb.abs() ** 2)
    return num / torch.sqrt(da * db).clamp_min(1e-30)
