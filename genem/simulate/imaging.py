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
from genem.physics.detector import apply_mtf
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


def patch_sizes(box: int, delocalisation: int = 0) -> tuple[int, int]:
    """(M, P): an even FFT-friendly size M >= box for the particle's projection, and the contrast patch P >= M
    that also holds the CTF delocalisation on each side."""
    m = 2 * _good_fft_size((box + 1) // 2)
    return m, _good_fft_size(max(m, box + 2 * delocalisation))


def render_particle_contrast(projector: FourierProjector, euler_deg: np.ndarray, frac_shift_px: np.ndarray,
                             ctfs: list[CTFParams], pixel_size_A: float, voltage_kV: float, *, batch: int = 64,
                             patch_px: int | None = None):
    """Per-particle contrast patches (n, P, P) with their own CTFs, and CTF-free projections (n, M, M) for masks.

    Patches are centred at P//2 (and M//2) and already shifted by the sub-pixel part of each particle's position.
    The projection is sampled on the M grid only (it fits in M), then zero-padded to P, where the CTF acts: the exact
    band-limited image on the P grid for a fraction of the slice sampling, and the mask projection for free.
    """
    M, P = patch_sizes(projector.box, delocalisation_px(list(ctfs), pixel_size_A))
    P = max(P, patch_px or 0)
    sigma = interaction_constant_rad_per_V_A(voltage_kV)
    n = len(euler_deg)
    out_c = np.empty((n, P, P), dtype=np.float32)
    out_p = np.empty((n, M, M), dtype=np.float32)
    o = P // 2 - M // 2
    R_all = euler_to_matrix_relion(euler_deg[:, 0], euler_deg[:, 1], euler_deg[:, 2]) if n else None
    for s in range(0, n, batch):
        e = min(n, s + batch)
        spec = projector.project_rfft(torch.as_tensor(R_all[s:e], dtype=torch.float32), M)  # origin at [0, 0]
        # sub-pixel shift, plus M/2 to centre the projection at M//2 (an exact fftshift, M even)
        spec.mul_(phase_shift_rfft2(frac_shift_px[s:e] + M // 2, M, device=spec.device)).mul_(sigma)
        phase = torch.fft.irfft2(spec, s=(M, M))
        out_p[s:e] = phase.cpu().numpy()
        padded = phase.new_zeros((e - s, P, P))
        padded[:, o:o + M, o:o + M] = phase  # centred at P//2
        ctf = compute_ctf_2d(list(ctfs[s:e]), (P, P), pixel_size_A, device=spec.device)
        out_c[s:e] = torch.fft.irfft2(torch.fft.rfft2(padded).mul_(ctf), s=(P, P)).cpu().numpy()
    return out_c, out_p


def _ice_phase_contrast(rng: np.random.Generator, ice_nm: np.ndarray, sd_rad_per_sqrt_nm: float,
                        mic_ctf: CTFParams, pixel_size_A: float, correlation_px: float = 0.7) -> np.ndarray:
    """Contrast of the ice's random phase, sd * sqrt(t) * (unit Gaussian random field), through the micrograph CTF.

    The same model as ``gaussian_random_field_2d`` + CTF, in float32 torch FFTs.
    """
    h, w = ice_nm.shape
    # the transform of real white noise is white complex Gaussian noise: draw it in Fourier space (one FFT fewer;
    # the field is normalised below, so its scale does not matter)
    wc = w // 2 + 1
    f = torch.complex(torch.from_numpy(rng.standard_normal((h, wc), dtype=np.float32)),
                      torch.from_numpy(rng.standard_normal((h, wc), dtype=np.float32)))
    ky = torch.fft.fftfreq(h, dtype=torch.float32)[:, None]
    kx = torch.fft.rfftfreq(w, dtype=torch.float32)[None, :]
    f.mul_(torch.exp(-2 * (np.pi * correlation_px) ** 2 * (kx * kx + ky * ky)))
    g = torch.fft.irfft2(f, s=(h, w))
    g.sub_(g.mean())
    sd = float(g.std())
    if sd > 0:
        g.div_(sd)
    g.mul_(torch.from_numpy(np.sqrt(ice_nm, dtype=np.float32)).mul_(sd_rad_per_sqrt_nm))
    ctf = compute_ctf_2d(mic_ctf, (h, w), pixel_size_A)
    return torch.fft.irfft2(torch.fft.rfft2(g).mul_(ctf), s=(h, w)).numpy()


_NOISE_CHUNKS = 4  # fixed, so that the counts do not depend on the number of threads


def _shot_noise(rng: np.random.Generator, expected: np.ndarray) -> np.ndarray:
    """Poisson counts for the expected electrons per pixel (``sample_shot_noise``'s model), drawn by torch's sampler
    in a fixed number of row blocks, each with its own generator seeded from ``rng``, on parallel threads."""
    from concurrent.futures import ThreadPoolExecutor

    seeds = rng.integers(0, 2 ** 63 - 1, size=_NOISE_CHUNKS)
    lam = torch.from_numpy(np.ascontiguousarray(expected, dtype=np.float32)).clamp_min(0)
    bounds = np.linspace(0, lam.shape[0], _NOISE_CHUNKS + 1).astype(int)

    def block(i):
        with torch.inference_mode():  # grad mode is per thread
            gen = torch.Generator().manual_seed(int(seeds[i]))
            return torch.poisson(lam[bounds[i]:bounds[i + 1]], generator=gen).numpy()

    workers = max(1, min(torch.get_num_threads(), _NOISE_CHUNKS))
    if workers == 1:
        parts = [block(i) for i in range(_NOISE_CHUNKS)]
    else:
        with ThreadPoolExecutor(workers) as ex:
            parts = list(ex.map(block, range(_NOISE_CHUNKS)))
    return np.concatenate(parts)


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
        ctfs = [particle_ctfs[k] for k in sel]
        _, P = patch_sizes(proj.box, delocalisation_px(ctfs, pixel_size_A))  # one patch size for the micrograph
        for s in range(0, len(sel), 64):  # stream the patches: memory stays at one batch of P x P patches
            part = sel[s:s + 64]
            c, p = render_particle_contrast(proj, specimen.euler_deg[part], frac[part], ctfs[s:s + 64],
                                            pixel_size_A, mic_ctf.voltage_kV, patch_px=P)
            pm = p > mask_threshold * p.max(axis=(1, 2), keepdims=True)
            for j, k in enumerate(part):
                paste(contrast, c[j], ix[k], iy[k])
                paste(mask, pm[j], ix[k], iy[k], op="label", value=k + 1)
    T = torch.from_numpy(np.asarray(ice_nm, dtype=np.float32)).mul(-1.0 / ice_mfp_nm).exp_().numpy()  # exp(-t/mfp)
    # the particles' signal -2 T contrast, measured inside the masks
    inside = mask > 0
    if inside.any():
        sig_var = float((-2.0 * T[inside] * contrast[inside]).var())
    else:
        sig_var = float((-2.0 * T * contrast).var())
    # ice: random phase whose variance grows with thickness, imaged with the micrograph's CTF. It is structured
    # noise: part of the noisy micrograph, not of the clean one (nor of noise_mode "none")
    ice_contrast = None
    if ice_phase_sd_rad_per_sqrt_nm > 0 and float(ice_nm.max()) > 0 and noise_mode != "none":
        ice_contrast = _ice_phase_contrast(rng, ice_nm, ice_phase_sd_rad_per_sqrt_nm, mic_ctf, pixel_size_A)
    clean_intensity = contrast
    clean_intensity *= -2.0
    clean_intensity += 1.0
    clean_intensity *= T  # T (1 - 2 contrast), in place
    full_intensity = clean_intensity
    if ice_contrast is not None:
        ice_contrast *= -2.0 * T
        ice_contrast += clean_intensity
        full_intensity = ice_contrast  # T (1 - 2 contrast) - 2 T ice contrast
    if mtf is not None:
        clean_intensity = apply_mtf(clean_intensity, *mtf)
        full_intensity = clean_intensity if ice_contrast is None else apply_mtf(full_intensity, *mtf)
    if noise_mode == "poisson":
        # expected electrons per pixel, dose x pixel area x intensity (``expected_counts``), in place
        area = np.float32(dose_e_per_A2 * pixel_size_A ** 2)
        full = None if ice_contrast is None else np.multiply(full_intensity, area, out=full_intensity)
        clean = np.multiply(clean_intensity, area, out=clean_intensity)
        full = clean if full is None else full
        noisy = _shot_noise(rng, full)
        noise_sd = float(np.sqrt(clean.mean()))
        sig_var *= (dose_e_per_A2 * pixel_size_A ** 2) ** 2
    elif noise_mode == "snr":
        clean = clean_intensity.astype(np.float32, copy=False)
        noise_sd = float(np.sqrt(sig_var / snr)) if sig_var > 0 else 1.0
        noisy = rng.standard_normal(clean.shape, dtype=np.float32)
        noisy *= noise_sd
        noisy += full_intensity
    else:
        clean = clean_intensity.astype(np.float32, copy=False)
        noisy = clean.copy()
        noise_sd = 0.0
    return MicrographImage(noisy.astype(np.float32, copy=False), clean.astype(np.float32, copy=False), mask,
                           ice_nm.astype(np.float32, copy=False), sig_var, noise_sd)
