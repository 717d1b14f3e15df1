"""Particle stacks rendered directly, without a micrograph (the fast path for large training stacks).

Each image is the weak-phase-object contrast of one particle in its own box, in the convention of extracted,
contrast-inverted RELION particles (particle bright where CTF * projection is positive):

    clean = 2 sigma_e F^-1[ CTF . F{V_proj}(k) . exp(-2 pi i k.s) ]        (sigma_e: interaction constant, V_proj in V*A)

i.e. 1 - intensity for unit incident intensity, s the particle centre's offset from the box centre (x, y) in pixels
(RELION rlnOriginX/YAngst = -s * pixel size). As in ``relion_project --ctf``, the CTF acts within the box (the
delocalised signal wraps around at the box edge). Noise:

- ``none``: images = clean;
- ``gaussian``: white Gaussian noise of standard deviation ``noise_sd`` (``relion_project --white_noise``);
- ``snr``: white Gaussian noise with variance = var(clean inside a disc of ``signal_radius_px``, over the stack) / snr;
- ``poisson``: shot noise for ``dose_e_per_A2``: images = 1 - counts / (dose x pixel area),
  counts ~ Poisson(dose x pixel area x (1 - clean)).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genem.physics.constants import interaction_constant_rad_per_V_A
from genem.physics.ctf import CTFParams, compute_ctf_2d
from genem.physics.projection import FourierProjector, phase_shift_rfft2
from genem.physics.rotations import euler_to_matrix_relion
from genem.simulate.imaging import _good_fft_size

NOISE_MODES = ("none", "gaussian", "snr", "poisson")


@dataclass
class ParticleStack:
    images: np.ndarray  # (n, box, box) float32, with noise
    clean: np.ndarray  # (n, box, box) float32, noise-free
    noise_sd: float  # per-pixel noise standard deviation (for poisson: at the vacuum level)


def crop_volume_to_support(volume: np.ndarray, *, rel_threshold: float = 1e-6) -> np.ndarray:
    """The smallest centred cubic sub-box (even size, centre kept at N//2) holding every voxel above
    ``rel_threshold`` x max |volume|: projecting it on a larger grid gives the same images, faster."""
    v = np.asarray(volume)
    n = v.shape[0]
    big = np.abs(v) > rel_threshold * float(np.abs(v).max() or 1.0)
    if not big.any():
        return v
    idx = np.argwhere(big)
    c = n // 2
    half = max(int(c - idx.min()), int(idx.max() - c + 1)) + 1  # a sub-box [c - half, c + half) holds them all
    m = min(n, 2 * half)
    o = n // 2 - m // 2
    return np.ascontiguousarray(v[o:o + m, o:o + m, o:o + m])


def _check(noise_mode, snr, noise_sd, dose_e_per_A2):
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, not {noise_mode!r}")
    if noise_mode == "snr" and not (snr is not None and snr > 0):
        raise ValueError("noise_mode 'snr' needs snr > 0")
    if noise_mode == "gaussian" and not (noise_sd is not None and noise_sd >= 0):
        raise ValueError("noise_mode 'gaussian' needs noise_sd >= 0")
    if noise_mode == "poisson" and not (dose_e_per_A2 is not None and dose_e_per_A2 > 0):
        raise ValueError("noise_mode 'poisson' needs dose_e_per_A2 > 0")


def render_clean_stack(projector: FourierProjector, euler_deg, ctfs: list[CTFParams] | None, *, box_px: int | None = None,
                       shifts_px=None, voltage_kV: float | None = None, batch: int = 256) -> torch.Tensor:
    """Noise-free particle images (n, box, box) float32 tensor (see the module docstring for the model)."""
    eul = np.asarray(euler_deg, dtype=np.float64).reshape(-1, 3)
    n = len(eul)
    box = int(box_px or projector.box)
    if box % 2:
        raise ValueError("box_px must be even")
    if ctfs is not None and len(ctfs) != n:
        raise ValueError(f"{len(ctfs)} CTFs for {n} poses")
    if voltage_kV is None:
        if not ctfs:
            raise ValueError("voltage_kV is needed when no CTFs are given")
        voltage_kV = ctfs[0].voltage_kV
    if ctfs and any(c.voltage_kV != voltage_kV for c in ctfs):
        raise ValueError("all CTFs of a stack must share one voltage")
    shifts = np.zeros((n, 2)) if shifts_px is None else np.asarray(shifts_px, dtype=np.float64).reshape(n, 2)
    factor = 2.0 * interaction_constant_rad_per_V_A(voltage_kV)
    R_all = euler_to_matrix_relion(eul[:, 0], eul[:, 1], eul[:, 2])
    # a volume smaller than the box is sampled on its own (even, FFT-friendly) grid M and zero-padded to the box:
    # the same band-limited image for (M/box)^2 of the slice sampling
    m = min(box, 2 * _good_fft_size((projector.box + 1) // 2))
    o = box // 2 - m // 2
    out = torch.empty((n, box, box), dtype=torch.float32)
    for s in range(0, n, batch):
        e = min(n, s + batch)
        R = torch.as_tensor(R_all[s:e], dtype=torch.float32)
        if m < box:
            spec_m = projector.project_rfft(R, m)
            spec_m.mul_(phase_shift_rfft2(np.full((e - s, 2), m // 2), m, device=spec_m.device))  # centre at m//2
            padded = spec_m.real.new_zeros((e - s, box, box))
            padded[:, o:o + m, o:o + m] = torch.fft.irfft2(spec_m, s=(m, m))
            spec = torch.fft.rfft2(padded)  # centred at box//2 in real space
            ph = phase_shift_rfft2(shifts[s:e], box, device=spec.device)
        else:
            spec = projector.project_rfft(R, box)
            # shifting by box/2 more centres the image at box//2 (an exact fftshift for an even box)
            ph = phase_shift_rfft2(shifts[s:e] + box // 2, box, device=spec.device)
        spec.mul_(ph)
        if ctfs is not None:
            ctf = compute_ctf_2d(list(ctfs[s:e]), (box, box), projector.pixel_size_A, device=spec.device)
            spec.mul_(ctf)
        spec.mul_(factor)
        out[s:e] = torch.fft.irfft2(spec, s=(box, box)).cpu()
    return out


def simulate_particle_stack(projector: FourierProjector, euler_deg, ctfs: list[CTFParams] | None, *,
                            box_px: int | None = None, shifts_px=None, noise_mode: str = "none",
                            snr: float | None = None, noise_sd: float | None = None,
                            dose_e_per_A2: float | None = None, signal_radius_px: float | None = None,
                            voltage_kV: float | None = None, rng: np.random.Generator | None = None,
                            batch: int = 256) -> ParticleStack:
    """Render n particle images (poses ``euler_deg`` (n, 3) RELION rot/tilt/psi in degrees, one CTF each) and add
    noise; returns :class:`ParticleStack` of float32 numpy arrays. Seeded by ``rng`` (numpy Generator)."""
    _check(noise_mode, snr, noise_sd, dose_e_per_A2)
    clean = render_clean_stack(projector, euler_deg, ctfs, box_px=box_px, shifts_px=shifts_px,
                               voltage_kV=voltage_kV, batch=batch)
    n, box = clean.shape[0], clean.shape[-1]
    rng = rng if rng is not None else np.random.default_rng()
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2 ** 63 - 1)))
    if noise_mode == "none" or n == 0:
        return ParticleStack(clean.numpy(), clean.numpy(), 0.0)
    if noise_mode == "poisson":
        area = dose_e_per_A2 * projector.pixel_size_A ** 2
        counts = torch.poisson((area * (1.0 - clean)).clamp_min_(0), generator=gen)
        images = 1.0 - counts / area
        return ParticleStack(images.numpy(), clean.numpy(), float(1.0 / np.sqrt(area)))
    if noise_mode == "snr":
        r = float(signal_radius_px if signal_radius_px is not None else projector.box / 2)
        c = torch.arange(box, dtype=torch.float32) - box // 2
        disc = (c[:, None] ** 2 + c[None, :] ** 2) <= r * r
        inside = clean[:, disc]
        var = float(inside.var()) if inside.numel() > 1 else 0.0
        sd = float(np.sqrt(var / snr)) if var > 0 else 1.0
    else:
        sd = float(noise_sd)
    noise = torch.randn(clean.shape, generator=gen, dtype=torch.float32)
    images = noise.mul_(sd).add_(clean)
    return ParticleStack(images.numpy(), clean.numpy(), sd)
