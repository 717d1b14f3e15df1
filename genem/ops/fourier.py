"""Fourier-space image operations: resampling by cropping or zero-padding the spectrum, radial averages and
radially averaged power spectra. Leading batch dimensions are kept; numpy arrays are accepted and given back.

Rings are indexed k = 0..min(H, W)//2 (k cycles per box along the shorter side; spatial frequency
k / (N * pixel_size_A) in 1/A).
"""
from __future__ import annotations

import math

import torch

from ._arrays import as_tensor, like_input


def _resample_fourier(x, shape_out: tuple, centered: bool):
    t, was_numpy = as_tensor(x)
    nd = len(shape_out)
    dims = tuple(range(-nd, 0))
    shape_in = tuple(t.shape[-nd:])
    shape_out = tuple(int(s) for s in shape_out)
    if shape_out == shape_in:
        return x
    if min(shape_out) < 1:
        raise ValueError(f"cannot resample to shape {shape_out}")
    xd = t.to(torch.float64)
    if centered:
        xd = torch.fft.ifftshift(xd, dim=dims)
    spec = torch.fft.fftshift(torch.fft.fftn(xd, dim=dims), dim=dims)
    out = torch.zeros(t.shape[:-nd] + shape_out, dtype=spec.dtype, device=t.device)
    src, dst = [], []
    for n, s in zip(shape_in, shape_out):
        m = min(n, s)
        src.append(slice(n // 2 - m // 2, n // 2 - m // 2 + m))
        dst.append(slice(s // 2 - m // 2, s // 2 - m // 2 + m))
    out[(Ellipsis, *dst)] = spec[(Ellipsis, *src)]
    res = torch.fft.ifftn(torch.fft.ifftshift(out, dim=dims), dim=dims).real
    if centered:
        res = torch.fft.fftshift(res, dim=dims)
    res = res * (math.prod(shape_out) / math.prod(shape_in))
    return like_input(res.to(t.dtype), was_numpy)


def resample_fourier_2d(images, shape_out, *, centered: bool = True):
    """Resample images (..., H, W) to ``shape_out`` ((h, w) or an int for a square) by cropping or zero-padding
    their centred spectrum (down- and up-sampling; H, W, h, w odd or even).

    Pixel values are kept (not sums): the field of view is unchanged, so the new pixel size is old * H / h (and
    old * W / w). ``centered``: the box centre (index N//2) maps to n//2, as particles and volumes need; otherwise
    pixel 0 stays at 0 and coordinates scale by n / N, as micrograph coordinates need. The two agree when both
    sizes are even. Computed in float64, returned in the input's dtype.
    """
    if isinstance(shape_out, int):
        shape_out = (shape_out, shape_out)
    return _resample_fourier(images, tuple(shape_out), centered)


def resample_fourier_3d(volumes, shape_out, *, centered: bool = True):
    """:func:`resample_fourier_2d` for volumes (..., D, H, W); ``shape_out`` is (d, h, w) or an int for a cube."""
    if isinstance(shape_out, int):
        shape_out = (shape_out,) * 3
    return _resample_fourier(volumes, tuple(shape_out), centered)


def _ring_index(shape, device):
    h, w = shape
    n = min(h, w)
    ky = torch.fft.fftfreq(h, device=device, dtype=torch.float64) * n
    kx = torch.fft.fftfreq(w, device=device, dtype=torch.float64) * n
    r = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    return torch.round(r).long(), n // 2 + 1


def radial_average_2d(values, *, centered: bool = False, n_bins: int | None = None):
    """Mean of ``values`` (..., H, W) over rings of integer radius around the origin.

    ``values`` is on an unshifted fft2 grid (origin at [0, 0]) unless ``centered`` (origin at [H//2, W//2]).
    Returns (..., n_bins) with ``n_bins`` = min(H, W)//2 + 1 by default (rings beyond are dropped).
    """
    v, was_numpy = as_tensor(values)
    if centered:
        v = torch.fft.ifftshift(v, dim=(-2, -1))
    idx, nb = _ring_index(v.shape[-2:], v.device)
    nb = n_bins or nb
    flat = idx.reshape(-1)
    keep = flat < nb
    lead = v.shape[:-2]
    vf = v.reshape(-1, flat.numel())[:, keep]
    fi = flat[keep]
    sums = torch.zeros(vf.shape[0], nb, dtype=vf.dtype, device=v.device).index_add_(1, fi, vf)
    counts = torch.zeros(nb, dtype=torch.float64, device=v.device).index_add_(
        0, fi, torch.ones_like(fi, dtype=torch.float64))
    out = sums / counts.clamp_min(1).to(sums.real.dtype)
    return like_input(out.reshape(lead + (nb,)), was_numpy)


def radial_power_spectrum_2d(images):
    """Rotationally averaged power |F|^2 / (H W) of each image (..., H, W) -> (..., min(H, W)//2 + 1), float64.
    White noise of variance s^2 gives s^2 at every ring."""
    x, was_numpy = as_tensor(images)
    x = x.to(torch.float64)
    p = torch.fft.fft2(x).abs() ** 2 / (x.shape[-1] * x.shape[-2])
    return like_input(radial_average_2d(p), was_numpy)
