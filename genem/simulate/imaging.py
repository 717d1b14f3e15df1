"""Imaging of one micrograph under the weak-phase-object approximation (pure computation, no file I/O).

phase(x)   = sigma_e * sum_i V_proj,i(x - x_i)               (sigma_e: interaction constant, V_proj in V*A)
contrast   = F^-1[ CTF_i . F{phase_i} ] per particle, in a padded box so each particle has its own defocus
             (micrograph defocus + its height), plus the ice's random phase through the micrograph CTF
clean      = T_ice(x) * (1 - 2 particle contrast)              (1 = vacuum; T_ice = exp(-t / mfp))
full       = clean - 2 T_ice(x) ice contrast                    (the ice's structure is noise: not in clean)
poisson:   clean = dose * pixel_area * (clean (x) MTF),  noisy = Poisson(dose * pixel_area * (full (x) MTF))
snr:       noisy = full + N(0, s^2),  s^2 = var(particle signal inside masks) / SNR
none:      noisy = clean
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genem.physics.constants import interaction_constant_rad_per_V_A
from genem.physics.ctf import CTFParams, compute_ctf_2d
from genem.physics.detector import apply_mtf, expected_counts, sample_shot_noise
from genem.physics.ice import gaussian_random_field_2d, transmission_from_thickness
from genem.physics.projection import FourierProjector, phase_shift_rfft2
from genem.physics.rotations import euler_to_matrix_relion


@dataclass
class MicrographImage:
    noisy: np.ndarray
    clean: np.ndarray
    mask: np.ndarray  # uint16 labels
    ice_nm: np.ndarray
    particle_signal_var: float
    noise_sd: float


def _good_fft_size(n: int) -> int:
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def delocalisation_px(ctfs: list[CTFParams], pixel_size_A: float) -> int:
    """How far (pixels) the CTF spreads a point at Nyquist: (lambda defocus u + Cs lambda^3 u^3) / pixel, u = Nyquist.

    The per-particle box must hold the particle plus this margin on each side, or the CTF fringes wrap around the
    periodic box and its edges show as straight lines in the micrograph.
    """
    from genem.physics.constants import wavelength_A

    if not ctfs:
        return 0
    u = 1.0 / (2.0 * pixel_size_A)
    lam = wavelength_A(ctfs[0].voltage_kV)
    dmax = max(max(c.defocus_u_A, c.defocus_v_A) for c in ctfs)
    r_A = lam * dmax * u + ctfs[0].cs_mm * 1e7 * lam ** 3 * u ** 3
    return int(np.ceil(r_A / pixel_size_A))


def render_particle_contrast(projector: FourierProjector, euler_deg: np.ndarray, frac_shift_px: np.ndarray,
                             ctfs: list[CTFParams], pixel_size_A: float, voltage_kV: float, *, batch: int = 32):
    """Per-particle contrast patches (n, P, P) with their own CTFs, and CTF-free projections for masks.

    Patches are centred at P//2 and already shifted by the sub-pixel part of each particle's position.
    """
    box = projector.box
    P = _good_fft_size(box + 2 * delocalisation_px(ctfs, pixel_size_A))
    sigma = interaction_constant_rad_per_V_A(voltage_kV)
    out_c, out_p = [], []
    for s in range(0, len(euler_deg), batch):
        e = euler_deg[s:s + batch]
        R = torch.as_tensor(euler_to_matrix_relion(e[:, 0], e[:, 1], e[:, 2]), dtype=torch.float32)
        spec = projector.project_rfft(R, P) * sigma  # phase spectrum, origin at [0, 0]
        spec = spec * phase_shift_rfft2(frac_shift_px[s:s + batch], P, device=spec.device)
        ctf = compute_ctf_2d(list(ctfs[s:s + batch]), (P, P), pixel_size_A, device=spec.device)
        c = torch.fft.fftshift(torch.fft.irfft2(spec * ctf, s=(P, P)), dim=(-2, -1))
        p = torch.fft.fftshift(torch.fft.irfft2(spec, s=(P, P)), dim=(-2, -1))
        out_c.append(c.cpu().numpy())
        out_p.append(p.cpu().numpy())
    if not out_c:
        return np.zeros((0, P, P), np.float32), np.zeros((0, P, P), np.float32)
    return np.concatenate(out_c), np.concatenate(out_p)


def paste(canvas: np.ndarray, patch: np.ndarray, ix: int, iy: int, *, op: str = "add", value=None) -> None:
    """Add (or label-write) a patch centred (index P//2) at integer pixel (ix, iy), clipped to the canvas."""
    P = patch.shape[0]
    h, w = canvas.shape
    r0, c0 = iy - P // 2, ix - P // 2
    rs, cs = max(0, r0), max(0, c0)
    re, ce = min(h, r0 + P), min(w, c0 + P)
    if rs >= re or cs >= ce:
        return
    sub = patch[rs - r0:re - r0, cs - c0:ce - c0]
    if op == "add":
        canvas[rs:re, cs:ce] += sub
    else:
        region = canvas[rs:re, cs:ce]
        region[sub] = value


def image_micrograph(rng: np.random.Generator, *, shape, pixel_size_A: float, projectors, specimen, mic_ctf: CTFParams,
                     particle_ctfs: list[CTFParams], ice_nm: np.ndarray, ice_mfp_nm: float,
                     ice_phase_sd_rad_per_sqrt_nm: float, noise_mode: str, dose_e_per_A2: float, snr: float,
                     mtf=None, mask_threshold: float = 0.05) -> MicrographImage:
    h, w = shape
    contrast = np.zeros((h, w), dtype=np.float32)
    mask = np.zeros((h, w), dtype=np.uint16)
    ix = np.floor(specimen.x_px).astype(int)
    iy = np.floor(specimen.y_px).astype(int)
    frac = np.stack([specimen.x_px - ix, specimen.y_px - iy], -1)
    for sidx, proj in enumerate(projectors):
        sel = np.nonzero(specimen.structure == sidx)[0]
        if len(sel) == 0:
            continue
        c, p = render_particle_contrast(proj, specimen.euler_deg[sel], frac[sel], [particle_ctfs[k] for k in sel],
                                        pixel_size_A, mic_ctf.voltage_kV)
        for j, k in enumerate(sel):
            paste(contrast, c[j], ix[k], iy[k])
            pm = p[j] > mask_threshold * p[j].max()
            paste(mask, pm, ix[k], iy[k], op="label", value=k + 1)
    # ice: random phase whose variance grows with thickness, imaged with the micrograph's CTF. It is structured
    # noise: part of the noisy micrograph, not of the clean one (nor of noise_mode "none")
    ice_contrast = None
    if ice_phase_sd_rad_per_sqrt_nm > 0 and float(ice_nm.max()) > 0 and noise_mode != "none":
        phase = ice_phase_sd_rad_per_sqrt_nm * np.sqrt(ice_nm) * gaussian_random_field_2d(rng, (h, w), 0.7)
        ctf = compute_ctf_2d(mic_ctf, (h, w), pixel_size_A).numpy()
        ice_contrast = np.fft.irfft2(np.fft.rfft2(phase) * ctf, s=(h, w)).astype(np.float32)
    T = transmission_from_thickness(ice_nm, ice_mfp_nm).astype(np.float32)
    clean_intensity = T * (1.0 - 2.0 * contrast)
    full_intensity = clean_intensity if ice_contrast is None else clean_intensity - 2.0 * T * ice_contrast
    signal = -2.0 * T * contrast
    inside = mask > 0
    sig_var = float(signal[inside].var()) if inside.any() else float(signal.var())
    if mtf is not None:
        clean_intensity = apply_mtf(clean_intensity, *mtf)
        full_intensity = clean_intensity if ice_contrast is None else apply_mtf(full_intensity, *mtf)
    if noise_mode == "poisson":
        clean = expected_counts(clean_intensity, dose_e_per_A2, pixel_size_A)
        noisy = sample_shot_noise(rng, expected_counts(full_intensity, dose_e_per_A2, pixel_size_A))
        noise_sd = float(np.sqrt(clean.mean()))
        sig_var *= (dose_e_per_A2 * pixel_size_A ** 2) ** 2
    elif noise_mode == "snr":
        clean = clean_intensity.astype(np.float32)
        noise_sd = float(np.sqrt(sig_var / snr)) if sig_var > 0 else 1.0
        noisy = (full_intensity + rng.normal(0.0, noise_sd, size=clean.shape)).astype(np.float32)
    else:
        clean = clean_intensity.astype(np.float32)
        noisy = clean.copy()
        noise_sd = 0.0
    return MicrographImage(noisy.astype(np.float32), clean.astype(np.float32), mask, ice_nm.astype(np.float32),
                           sig_var, noise_sd)
