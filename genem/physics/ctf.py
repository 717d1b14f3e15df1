"""Contrast transfer function in RELION's convention (``ctf.h``), with envelopes and aberrations.

With u the spatial frequency (1/A) and theta = atan2(k_y (row), k_x (column)):

    defocus(theta) = -(U+V)/2 - (U-V)/2 cos(2 (theta - angle))        (U, V underfocus positive)
    gamma = pi lambda defocus u^2 + pi/2 Cs lambda^3 u^4 - phase_shift - atan(Q0 / sqrt(1 - Q0^2)) + even Zernike
    CTF   = -sin(gamma) * E_B E_s E_t * exp(-i chi_odd)

E_B = exp(-B u^2 / 4) (RELION's B-factor), E_s the partial spatial coherence envelope for an illumination
semi-angle alpha (Frank 1973): exp(-(pi alpha)^2 (Cs lambda^2 u^3 + defocus u)^2), and E_t the temporal coherence
envelope for a defocus spread delta = Cc * dE/E (Reimer): exp(-(pi lambda delta)^2 u^4 / 2). chi_odd is the
antisymmetric phase of beam tilt (2 pi Cs lambda^2 u^2 (u . beta), as RELION applies it) plus odd Zernike terms.

Since cos(2 (theta - angle)) u^2 = (k_x^2 - k_y^2) cos 2angle + 2 k_x k_y sin 2angle, the phase of every image is a
linear combination of a few grid terms shared by the whole batch,

    gamma = a u^2 + b (k_x^2 - k_y^2) + c (2 k_x k_y) + d u^4 + e,

so :func:`calculate_ctf_2d` (parameters as tensors with leading batch dimensions, teamtomo style) needs no atan2 and
no per-image grid. :func:`compute_ctf_2d` is the convenience wrapper over it taking :class:`CTFParams`.
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


def frequency_grid_2d(image_shape, pixel_size_A: float, *, rfft: bool = True, fftshift: bool = False, device=None,
                      dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(k_x (1, cols'), k_y (rows, 1)) in 1/A on the (r)fft2 grid of an image of ``image_shape`` (rows, cols);
    ``fftshift`` puts the zero frequency at the centre (of the rows only, for an rfft grid)."""
    h, w = int(image_shape[0]), int(image_shape[1])
    ky = torch.fft.fftfreq(h, d=pixel_size_A, device=device, dtype=dtype)
    kx = (torch.fft.rfftfreq if rfft else torch.fft.fftfreq)(w, d=pixel_size_A, device=device, dtype=dtype)
    if fftshift:
        ky = torch.fft.fftshift(ky)
        kx = kx if rfft else torch.fft.fftshift(kx)
    return kx[None, :], ky[:, None]


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


def _add_zernike(acc, coeffs, mn, kx, ky, batch_shape, dtype):
    """acc + sum_i coeffs[..., i] Z_i on the grid (grid terms in float64, cast to ``dtype``); acc may be None."""
    for i in range(coeffs.shape[-1]):
        c = coeffs[..., i]
        if bool(torch.any(c != 0)):
            z = _zernike_cart(*mn[i], kx, ky).to(dtype)
            term = c.to(dtype).reshape(batch_shape + (1, 1)) * z
            acc = term if acc is None else acc + term
    return acc


def calculate_ctf_2d(defocus_u_A, defocus_v_A, astigmatism_angle_deg, voltage_kV, cs_mm, amplitude_contrast,
                     phase_shift_deg, b_factor_A2, pixel_size_A: float, image_shape, *, rfft: bool = True,
                     fftshift: bool = False, illumination_semiangle_mrad=0.0, defocus_spread_A=0.0,
                     beam_tilt_x_mrad=0.0, beam_tilt_y_mrad=0.0, odd_zernike=None, even_zernike=None,
                     complex_output: bool | None = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """CTFs (..., rows, cols//2+1) (or (..., rows, cols) for ``rfft=False``) on the 2D Fourier grid of an image of
    ``image_shape`` (rows, cols) at ``pixel_size_A``.

    Every optical parameter is a number or a tensor; they broadcast over the leading batch dimensions. Units are
    RELION's: U, V underfocus positive in A, the astigmatism angle (rlnDefocusAngle) in degrees, kV, mm, A^2, mrad.
    ``odd_zernike`` / ``even_zernike``: (..., n) coefficients in RELION's order (rad). Parameters are combined in
    float64 and the grid evaluated in ``dtype``. The result is real, or complex when odd aberrations (beam tilt, odd
    Zernike terms) are present (or as ``complex_output`` forces).
    """
    f64 = torch.float64
    dev = torch.device(device) if device is not None else torch.device("cpu")

    def par(x):
        return torch.as_tensor(x, dtype=f64, device=dev)

    U, V, ang = par(defocus_u_A), par(defocus_v_A), torch.deg2rad(par(astigmatism_angle_deg))
    kv, cs_A, q0 = par(voltage_kV), par(cs_mm) * 1e7, par(amplitude_contrast)
    bfac, alpha, spread = par(b_factor_A2), par(illumination_semiangle_mrad) * 1e-3, par(defocus_spread_A)
    tilt_x, tilt_y = par(beam_tilt_x_mrad) * 1e-3, par(beam_tilt_y_mrad) * 1e-3
    odd = par(odd_zernike if odd_zernike is not None else torch.zeros(0))
    even = par(even_zernike if even_zernike is not None else torch.zeros(0))
    scalars = (U, V, ang, kv, cs_A, q0, bfac, alpha, spread, tilt_x, tilt_y, par(phase_shift_deg))
    batch_shape = torch.broadcast_shapes(*(t.shape for t in scalars), odd.shape[:-1], even.shape[:-1])

    def coef(t):  # combined in float64, then one value per image with two trailing grid dimensions
        return t.expand(batch_shape).to(dtype).reshape(batch_shape + (1, 1))

    lam = wavelength_A(kv)
    half_sum, half_diff = -(U + V) / 2, -(U - V) / 2
    c2, s2 = torch.cos(2 * ang), torch.sin(2 * ang)
    pl = math.pi * lam
    const = -torch.deg2rad(par(phase_shift_deg)) - torch.atan(q0 / torch.sqrt(1 - q0 * q0))

    kx, ky = frequency_grid_2d(image_shape, pixel_size_A, rfft=rfft, fftshift=fftshift, device=dev, dtype=f64)
    u2_64 = kx * kx + ky * ky
    u2, dxy, pxy = u2_64.to(dtype), (kx * kx - ky * ky).to(dtype), (2 * kx * ky).to(dtype)
    u4 = (u2_64 * u2_64).to(dtype)

    gamma = coef(pl * half_sum) * u2
    gamma.addcmul_(coef(pl * half_diff * c2), dxy).addcmul_(coef(pl * half_diff * s2), pxy)
    gamma.addcmul_(coef(math.pi / 2 * cs_A * lam ** 3), u4).add_(coef(const))
    gamma = _add_zernike(gamma, even, _EVEN_MN, kx, ky, batch_shape, dtype)
    ctf = gamma.sin_().neg_()

    log_env = None
    if bool(torch.any(bfac != 0)):
        log_env = coef(bfac) * (-0.25 * u2)
    if bool(torch.any(alpha != 0)):
        # Frank: exp(-(pi alpha)^2 (Cs lambda^2 u^3 + defocus(theta) u)^2), the bracket being
        # (defocus(theta) u^2 + Cs lambda^2 u^4) / u: the grid terms of gamma over u
        pa = math.pi * alpha
        g = coef(pa * half_sum) * u2
        g.addcmul_(coef(pa * half_diff * c2), dxy).addcmul_(coef(pa * half_diff * s2), pxy)
        g.addcmul_(coef(pa * cs_A * lam ** 2), u4).mul_(torch.where(u2 > 0, u2.rsqrt(), 0))
        g = g.square_().neg_()
        log_env = g if log_env is None else log_env.add_(g)
    if bool(torch.any(spread != 0)):
        t = coef(0.5 * (math.pi * lam * spread) ** 2) * (-u4)
        log_env = t if log_env is None else log_env.add_(t)
    if log_env is not None:
        ctf.mul_(log_env.exp_())

    chi_odd = None
    if bool(torch.any(tilt_x != 0)) or bool(torch.any(tilt_y != 0)):
        # beam tilt as RELION applies it: 2 pi Cs lambda^2 u^2 (k . beta)
        k = 2 * math.pi * cs_A * lam ** 2
        chi_odd = coef(k * tilt_x) * (u2_64 * kx).to(dtype) + coef(k * tilt_y) * (u2_64 * ky).to(dtype)
    chi_odd = _add_zernike(chi_odd, odd, _ODD_MN, kx, ky, batch_shape, dtype)
    has_odd = chi_odd is not None and bool(torch.any(chi_odd != 0))
    if complex_output or (complex_output is None and has_odd):
        ctf = (ctf * torch.exp(-1j * chi_odd) if chi_odd is not None
               else ctf.to(torch.promote_types(dtype, torch.complex64)))
    return ctf


def compute_ctf_2d(params: CTFParams | list, shape, pixel_size_A: float, *, rfft: bool = True, device=None,
                   complex_output: bool | None = None, dtype=torch.float32) -> torch.Tensor:
    """:func:`calculate_ctf_2d` for one :class:`CTFParams` (rows, cols') or a list of them (B, rows, cols')."""
    plist = list(params) if isinstance(params, (list, tuple)) else [params]

    def col(name):
        return torch.tensor([float(getattr(p, name)) for p in plist], dtype=torch.float64)

    def zernike(name):
        n = max((len(getattr(p, name)) for p in plist), default=0)
        return torch.tensor([list(getattr(p, name)) + [0.0] * (n - len(getattr(p, name))) for p in plist],
                            dtype=torch.float64).reshape(len(plist), n)

    ctf = calculate_ctf_2d(
        col("defocus_u_A"), col("defocus_v_A"), col("defocus_angle_deg"), col("voltage_kV"), col("cs_mm"),
        col("amplitude_contrast"), col("phase_shift_deg"), col("bfactor_A2"), pixel_size_A, shape, rfft=rfft,
        illumination_semiangle_mrad=col("illumination_semiangle_mrad"), defocus_spread_A=col("defocus_spread_A"),
        beam_tilt_x_mrad=col("beam_tilt_x_mrad"), beam_tilt_y_mrad=col("beam_tilt_y_mrad"),
        odd_zernike=zernike("odd_zernike"), even_zernike=zernike("even_zernike"), complex_output=complex_output,
        device=device, dtype=dtype)
    return ctf if isinstance(params, (list, tuple)) else ctf[0]
