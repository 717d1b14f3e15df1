"""Fast batched CTF on an rfft2 grid: the same values as :func:`genem.physics.ctf.compute_ctf_2d`, computed from a
few grid terms shared by the whole batch.

For every image the aberration phase is linear in four grid terms,

    gamma = a u^2 + b (k_x^2 - k_y^2) + c (2 k_x k_y) + d u^4 + e
    a = -pi lambda (U+V)/2,  (b, c) = -pi lambda (U-V)/2 (cos 2 angle, sin 2 angle),  d = pi/2 Cs lambda^3,
    e = -phase_shift - atan(Q0 / sqrt(1 - Q0^2))

because cos(2 (theta - angle)) u^2 = (k_x^2 - k_y^2) cos 2angle + 2 k_x k_y sin 2angle. So a batch of CTFs is one
(B, 5) x (5, pixels) matrix product, a sine and (when present) the envelopes, in float32, with no atan2 and no
per-image grid. The envelopes use the same forms (B-factor, Frank's spatial coherence with the defocus-signed
gradient, temporal coherence). Odd aberrations, beam tilt and Zernike terms fall back to ``compute_ctf_2d``.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from .constants import wavelength_A
from .ctf import CTFParams, compute_ctf_2d

#: grids larger than this (pixels) are rebuilt on each call instead of cached
_CACHE_MAX_PIXELS = 1 << 20


def _grid_terms(shape, pixel_size_A: float, device):
    h, w = shape
    ky = torch.fft.fftfreq(h, d=pixel_size_A, dtype=torch.float64, device=device)[:, None]
    kx = torch.fft.rfftfreq(w, d=pixel_size_A, dtype=torch.float64, device=device)[None, :]
    u2 = kx * kx + ky * ky
    dxy = kx * kx - ky * ky
    pxy = 2 * kx * ky
    u = torch.sqrt(u2)
    inv_u = torch.where(u > 0, 1 / u.clamp_min(1e-300), torch.zeros_like(u))
    basis = torch.stack([u2, dxy, pxy, u2 * u2, torch.ones_like(u2)]).reshape(5, -1)
    # defocus(theta) * u = a' u + b' dxy/u + c' pxy/u; and the Cs gradient term u^3
    grad_basis = torch.stack([u, dxy * inv_u, pxy * inv_u, u2 * u, torch.zeros_like(u2)]).reshape(5, -1)
    f32 = torch.float32
    return basis.to(f32), grad_basis.to(f32), u2.reshape(-1).to(f32)


@lru_cache(maxsize=16)
def _cached_grid_terms(shape, pixel_size_A, device):
    return _grid_terms(shape, pixel_size_A, device)


def _aberration_terms(p: CTFParams):
    """(lambda, Cs in A, -(U+V)/2, -(U-V)/2, cos 2 angle, sin 2 angle, constant phase) of one CTF."""
    ang = math.radians(p.defocus_angle_deg)
    q0 = p.amplitude_contrast
    const = -math.radians(p.phase_shift_deg) - math.atan(q0 / math.sqrt(1 - q0 * q0))
    return (wavelength_A(p.voltage_kV), p.cs_mm * 1e7, -(p.defocus_u_A + p.defocus_v_A) / 2,
            -(p.defocus_u_A - p.defocus_v_A) / 2, math.cos(2 * ang), math.sin(2 * ang), const)


def _ctf_direct(p: CTFParams, h: int, w: int, pixel_size_A: float, dev) -> torch.Tensor:
    """One CTF on a large grid (a micrograph), element by element in float32 with in-place operations."""
    ky = torch.fft.fftfreq(h, d=pixel_size_A, dtype=torch.float64, device=dev).to(torch.float32)[:, None]
    kx = torch.fft.rfftfreq(w, d=pixel_size_A, dtype=torch.float64, device=dev).to(torch.float32)[None, :]
    lam, cs_A, half_sum, half_diff, c2, s2, const = _aberration_terms(p)
    u2 = kx * kx + ky * ky  # (h, w)
    # defocus(theta) u^2 = half_sum u^2 + half_diff (c2 (kx^2 - ky^2) + s2 2 kx ky)
    dfu2 = (kx * kx - ky * ky).mul_(half_diff * c2).add_((2 * s2 * half_diff) * (kx * ky)).add_(half_sum * u2)
    gamma = dfu2 * (math.pi * lam)
    gamma.add_(u2 * u2, alpha=math.pi / 2 * cs_A * lam ** 3)
    gamma.add_(const)
    ctf = gamma.sin_().neg_()
    log_env = None
    if p.bfactor_A2:
        log_env = u2 * (-p.bfactor_A2 / 4)
    alpha = p.illumination_semiangle_mrad * 1e-3
    if alpha:
        u = torch.sqrt(u2)
        # (Cs lambda^2 u^3 + defocus(theta) u) = u (Cs lambda^2 u^2 + defocus(theta)); defocus u^2 / u = dfu2 / u
        grad = torch.where(u > 0, dfu2 / u.clamp_min(1e-30), torch.zeros_like(u)).add_(u * u2, alpha=cs_A * lam ** 2)
        g = grad.square_().mul_(-((math.pi * alpha) ** 2))
        log_env = g if log_env is None else log_env.add_(g)
    if p.defocus_spread_A:
        t = (u2 * u2).mul_(-0.5 * (math.pi * lam * p.defocus_spread_A) ** 2)
        log_env = t if log_env is None else log_env.add_(t)
    if log_env is not None:
        ctf.mul_(log_env.exp_())
    return ctf


def _needs_general(p: CTFParams) -> bool:
    return bool(p.beam_tilt_x_mrad or p.beam_tilt_y_mrad or any(p.odd_zernike) or any(p.even_zernike))


def compute_ctf_2d_batch(params: list, shape, pixel_size_A: float, *, device=None) -> torch.Tensor:
    """CTFs (B, rows, cols//2+1) of a list of :class:`CTFParams` on the rfft2 grid of ``shape``, float32.

    Equal to ``compute_ctf_2d(params, shape, pixel_size_A)`` (to float32 rounding); parameters with odd or Zernike
    aberrations are handed to it (complex result).
    """
    plist = list(params)
    if not plist:
        h, w = shape
        return torch.zeros((0, h, w // 2 + 1), dtype=torch.float32, device=device)
    if any(_needs_general(p) for p in plist):
        return compute_ctf_2d(plist, shape, pixel_size_A, device=device)
    h, w = int(shape[0]), int(shape[1])
    dev = torch.device(device) if device is not None else torch.device("cpu")
    key = ((h, w), float(pixel_size_A), dev)
    if h * (w // 2 + 1) > _CACHE_MAX_PIXELS and len(plist) <= 4:
        return torch.stack([_ctf_direct(p, h, w, float(pixel_size_A), dev) for p in plist])
    terms = _cached_grid_terms(*key) if h * (w // 2 + 1) <= _CACHE_MAX_PIXELS else _grid_terms(*key)
    basis, grad_basis, u2 = terms

    rows, grads, bfac, spread = [], [], [], []
    for p in plist:
        lam, cs_A, half_sum, half_diff, c2, s2, e = _aberration_terms(p)
        pl = math.pi * lam
        rows.append([pl * half_sum, pl * half_diff * c2, pl * half_diff * s2, math.pi / 2 * cs_A * lam ** 3, e])
        alpha = p.illumination_semiangle_mrad * 1e-3
        # Frank: exp(-(pi alpha)^2 (Cs lambda^2 u^3 + defocus(theta) u)^2); fold pi alpha into the gradient
        pa = math.pi * alpha
        grads.append([pa * half_sum, pa * half_diff * c2, pa * half_diff * s2, pa * cs_A * lam ** 2, 0.0])
        bfac.append(p.bfactor_A2)
        spread.append(0.5 * (math.pi * lam * p.defocus_spread_A) ** 2)
    coef = torch.tensor(rows, dtype=torch.float64).to(dev, torch.float32)
    gamma = coef @ basis  # (B, pixels)
    ctf = torch.sin(gamma).neg_()
    log_env = None
    if any(b != 0 for b in bfac):
        log_env = torch.tensor(bfac, dtype=torch.float32, device=dev)[:, None] * (-0.25 * u2)
    if any(g[0] or g[1] or g[2] or g[3] for g in grads):
        gc = torch.tensor(grads, dtype=torch.float64).to(dev, torch.float32)
        g = gc @ grad_basis
        g = g.square_().neg_()
        log_env = g if log_env is None else log_env.add_(g)
    if any(s != 0 for s in spread):
        t = torch.tensor(spread, dtype=torch.float32, device=dev)[:, None] * (-(u2 * u2))
        log_env = t if log_env is None else log_env.add_(t)
    if log_env is not None:
        ctf.mul_(log_env.exp_())
    return ctf.reshape(len(plist), h, w // 2 + 1)
