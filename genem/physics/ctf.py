"""Contrast transfer function in RELION's convention (``ctf.h``), with envelopes and aberrations.

With u the spatial frequency (1/A) and theta = atan2(k_y (row), k_x (column)):

    defocus(theta) = -(U+V)/2 - (U-V)/2 cos(2 (theta - angle))        (U, V underfocus positive)
    gamma = pi lambda defocus u^2 + pi/2 Cs lambda^3 u^4 - phase_shift - atan(Q0 / sqrt(1 - Q0^2)) + even Zernike
    CTF   = -sin(gamma) * E_B E_s E_t * exp(-i chi_odd)

E_B = exp(-B u^2 / 4) (RELION's B-factor), E_s the partial spatial coherence envelope for an illumination
semi-angle alpha (Frank 1973): exp(-(pi alpha)^2 (Cs lambda^2 u^3 + defocus u)^2), and E_t the temporal coherence envelope for a
defocus spread delta = Cc * dE/E (Reimer): exp(-(pi lambda delta)^2 u^4 / 2). chi_odd is the antisymmetric phase of
beam tilt (2 pi Cs lambda^2 u^2 (u . beta), as RELION applies it) plus odd Zernike terms. All functions are pure
torch, take leading batch dimensions from their parameters and the device from ``like``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch

from .constants import wavelength_A


@dataclass(frozen=True)
class CTFParams:
    """Per-image CTF parameters, in RELION's units (A, degrees, kV, mm)."""

    defocus_u_A: float
    defocus_v_A: float
    defocus_angle_deg: float = 0.0
    voltage_kV: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    phase_shift_deg: float = 0.0
    bfactor_A2: float = 0.0
    illumination_semiangle_mrad: float = 0.0
    defocus_spread_A: float = 0.0
    beam_tilt_x_mrad: float = 0.0
    beam_tilt_y_mrad: float = 0.0
    odd_zernike: tuple = field(default_factory=tuple)
    even_zernike: tuple = field(default_factory=tuple)

    def __post_init__(self):
        if self.defocus_u_A < 0 or self.defocus_v_A < 0:
            raise ValueError("defocus must be >= 0 A (underfocus positive)")
        if not 0 <= self.amplitude_contrast < 1:
            raise ValueError("amplitude_contrast must be in [0, 1)")
        if self.voltage_kV <= 0:
            raise ValueError("voltage_kV must be > 0")

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def frequency_grid_rfft2(shape, pixel_size_A: float, *, device=None, dtype=torch.float32):
    """(k_x, k_y) in 1/A on the rfft2 grid of an image of ``shape`` (rows, cols); each (rows, cols//2+1)."""
    h, w = shape
    ky = torch.fft.fftfreq(h, d=pixel_size_A, device=device, dtype=dtype)
    kx = torch.fft.rfftfreq(w, d=pixel_size_A, device=device, dtype=dtype)
    return torch.meshgrid(kx, ky, indexing="xy")


def frequency_grid_fft2(shape, pixel_size_A: float, *, device=None, dtype=torch.float32):
    h, w = shape
    ky = torch.fft.fftfreq(h, d=pixel_size_A, device=device, dtype=dtype)
    kx = torch.fft.fftfreq(w, d=pixel_size_A, device=device, dtype=dtype)
    return torch.meshgrid(kx, ky, indexing="xy")


# RELION's Zernike ordering: odd index -> (m, n); even index -> (m, n)
_ODD_MN = [(-1, 1), (1, 1), (-3, 3), (-1, 3), (1, 3), (3, 3), (-5, 5), (-3, 5), (-1, 5), (1, 5), (3, 5), (5, 5)]
_EVEN_MN = [(0, 0), (-2, 2), (0, 2), (2, 2), (-4, 4), (-2, 4), (0, 4), (2, 4), (4, 4)]


def _zernike_cart(m: int, n: int, x, y):
    """Unnormalised Zernike polynomial Z_n^m at Cartesian (x, y) (frequencies in 1/A, as RELION evaluates them)."""
    rho = torch.sqrt(x * x + y * y)
    phi = torch.atan2(y, x)
    am = abs(m)
    R = torch.zeros_like(rho)
    for k in range((n - am) // 2 + 1):
        c = ((-1) ** k * math.factorial(n - k)
             / (math.factorial(k) * math.factorial((n + am) // 2 - k) * math.factorial((n - am) // 2 - k)))
        R = R + c * rho ** (n - 2 * k)
    return R * (torch.cos(am * phi) if m >= 0 else torch.sin(am * phi))


def _as_batch(x, like):
    t = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    return t.reshape(t.shape + (1, 1))


def compute_ctf_2d(params: CTFParams | list, shape, pixel_size_A: float, *, rfft: bool = True,
                   device=None, complex_output: bool | None = None) -> torch.Tensor:
    """CTF on the (r)fft2 grid of an image of ``shape``; a list of params gives a leading batch dimension.

    Returns a real tensor when the parameters have no odd aberrations, a complex one otherwise
    (or as ``complex_output`` forces).
    """
    plist = params if isinstance(params, (list, tuple)) else [params]
    grid = frequency_grid_rfft2 if rfft else frequency_grid_fft2
    kx, ky = grid(shape, pixel_size_A, device=device, dtype=torch.float64)

    def col(name):
        return _as_batch([getattr(p, name) for p in plist], kx)

    lam = _as_batch([wavelength_A(p.voltage_kV) for p in plist], kx)
    u2 = kx * kx + ky * ky
    theta = torch.atan2(ky, kx)
    U, V, ang = col("defocus_u_A"), col("defocus_v_A"), torch.deg2rad(col("defocus_angle_deg"))
    defocus = -(U + V) / 2 - (U - V) / 2 * torch.cos(2 * (theta - ang))
    cs_A = col("cs_mm") * 1e7
    q0 = col("amplitude_contrast")
    gamma = (math.pi * lam * defocus * u2 + math.pi / 2 * cs_A * lam ** 3 * u2 * u2
             - torch.deg2rad(col("phase_shift_deg")) - torch.atan(q0 / torch.sqrt(1 - q0 * q0)))
    odd = torch.zeros_like(gamma)
    for b, p in enumerate(plist):
        for i, c in enumerate(p.even_zernike):
            if c:
                gamma[b] = gamma[b] + c * _zernike_cart(*_EVEN_MN[i], kx, ky)
        for i, c in enumerate(p.odd_zernike):
            if c:
                odd[b] = odd[b] + c * _zernike_cart(*_ODD_MN[i], kx, ky)
    ctf = -torch.sin(gamma)
    ctf = ctf * torch.exp(-col("bfactor_A2") / 4 * u2)
    u = torch.sqrt(u2)
    alpha = col("illumination_semiangle_mrad") * 1e-3
    # spatial coherence: gradient of the (defocus-signed) aberration phase, Frank 1973
    grad = cs_A * lam ** 2 * u ** 3 + defocus * u
    ctf = ctf * torch.exp(-((math.pi * alpha) ** 2) * grad ** 2)
    delta = col("defocus_spread_A")
    ctf = ctf * torch.exp(-0.5 * (math.pi * lam * delta) ** 2 * u2 * u2)
    btx, bty = col("beam_tilt_x_mrad") * 1e-3, col("beam_tilt_y_mrad") * 1e-3
    odd = odd + 2 * math.pi * cs_A * lam ** 2 * u2 * (kx * btx + ky * bty)
    has_odd = bool(torch.any(odd != 0))
    if complex_output or (complex_output is None and has_odd):
        ctf = ctf * torch.exp(-1j * odd)
    ctf = ctf.to(torch.complex64 if ctf.is_complex() else torch.float32)
    return ctf if isinstance(params, (list, tuple)) else ctf[0]
