"""The simulator's fast paths equal the plain formulas: batched CTF, half-spectrum projector, stack renderer,
mask projections from the subsampled spectrum, and the stack noise models."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from genem.physics.constants import interaction_constant_rad_per_V_A, wavelength_A
from genem.physics.ctf import CTFParams, calculate_ctf_2d, compute_ctf_2d
from genem.physics.projection import FourierProjector, phase_shift_rfft2
from genem.physics.rotations import euler_to_matrix_relion, sample_uniform_euler_relion
from genem.simulate.imaging import delocalisation_px, patch_sizes, render_particle_contrast
from genem.simulate.stacks import crop_volume_to_support, render_clean_stack, simulate_particle_stack


def _random_ctfs(rng, n):
    return [CTFParams(rng.uniform(5000, 30000), rng.uniform(3000, 5000), rng.uniform(-180, 180),
                      voltage_kV=float(rng.choice([200.0, 300.0])), cs_mm=rng.uniform(0, 3),
                      amplitude_contrast=rng.uniform(0, 0.3), phase_shift_deg=rng.uniform(0, 90),
                      bfactor_A2=rng.uniform(0, 100), illumination_semiangle_mrad=rng.uniform(0, 0.1),
                      defocus_spread_A=rng.uniform(0, 50)) for _ in range(n)]


def _ctf_h_reference(p: CTFParams, shape, px: float) -> np.ndarray:
    """RELION's ctf.h written out with theta = atan2(k_y, k_x), in float64 numpy, with the module's envelopes."""
    ky = np.fft.fftfreq(shape[0], px)[:, None]
    kx = np.fft.rfftfreq(shape[1], px)[None, :]
    u2 = kx * kx + ky * ky
    lam, cs_A, q0 = wavelength_A(p.voltage_kV), p.cs_mm * 1e7, p.amplitude_contrast
    df = (-(p.defocus_u_A + p.defocus_v_A) / 2
          - (p.defocus_u_A - p.defocus_v_A) / 2 * np.cos(2 * (np.arctan2(ky, kx) - np.radians(p.defocus_angle_deg))))
    gamma = (np.pi * lam * df * u2 + np.pi / 2 * cs_A * lam ** 3 * u2 * u2 - np.radians(p.phase_shift_deg)
             - np.arctan(q0 / np.sqrt(1 - q0 * q0)))
    alpha = p.illumination_semiangle_mrad * 1e-3
    grad = cs_A * lam ** 2 * u2 ** 1.5 + df * np.sqrt(u2)
    env = (np.exp(-p.bfactor_A2 / 4 * u2) * np.exp(-(np.pi * alpha) ** 2 * grad ** 2)
           * np.exp(-0.5 * (np.pi * lam * p.defocus_spread_A) ** 2 * u2 * u2))
    return -np.sin(gamma) * env


@pytest.mark.parametrize("shape,px", [((96, 96), 1.0), ((100, 130), 3.0)])
def test_batched_ctf_equals_reference(shape, px):
    ps = _random_ctfs(np.random.default_rng(0), 5)
    ref = torch.as_tensor(np.stack([_ctf_h_reference(p, shape, px) for p in ps]), dtype=torch.float32)
    assert torch.allclose(compute_ctf_2d(ps, shape, px), ref, atol=2e-5)
    assert torch.allclose(compute_ctf_2d(ps, shape, px, dtype=torch.float64).float(), ref, atol=1e-6)
    # one image at a time (the micrograph case)
    assert torch.allclose(torch.stack([compute_ctf_2d(p, shape, px) for p in ps[:2]]), ref[:2], atol=2e-5)
    tilted = [CTFParams(10000, 9000, 20, beam_tilt_x_mrad=0.3)]  # odd aberrations: complex
    c = compute_ctf_2d(tilted, shape, px)
    assert c.is_complex()
    # float32 against float64: the phase (~400 rad at the grid corner) is rounded to float32 (ulp 3e-5)
    assert torch.allclose(c, compute_ctf_2d(tilted, shape, px, dtype=torch.float64).to(c.dtype), atol=1e-4)


def test_ctf_tensor_parameters_broadcast_over_batch_dims():
    """calculate_ctf_2d: parameters broadcast over leading batch dimensions; fftshift and full grids."""
    df = torch.tensor([[12000.0, 15000.0, 20000.0], [9000.0, 11000.0, 30000.0]])
    ang = torch.tensor([10.0, -40.0, 75.0])
    ctf = calculate_ctf_2d(df, df - 500, ang, 300.0, 2.7, 0.07, 0.0, 30.0, 1.2, (40, 48))
    assert ctf.shape == (2, 3, 40, 25)
    for i in range(2):
        for j in range(3):
            p = CTFParams(float(df[i, j]), float(df[i, j]) - 500, float(ang[j]), amplitude_contrast=0.07,
                          bfactor_A2=30.0)
            one = compute_ctf_2d(p, (40, 48), 1.2)
            assert torch.allclose(ctf[i, j], one, atol=1e-6)
    full = calculate_ctf_2d(df, df - 500, ang, 300.0, 2.7, 0.07, 0.0, 30.0, 1.2, (40, 48), rfft=False)
    shifted = calculate_ctf_2d(df, df - 500, ang, 300.0, 2.7, 0.07, 0.0, 30.0, 1.2, (40, 48), rfft=False, fftshift=True)
    assert full.shape == (2, 3, 40, 48)
    assert torch.allclose(full[..., :24], ctf[..., :24], atol=1e-6)  # column 24: +Nyquist in rfft, -Nyquist in fft
    assert torch.allclose(shifted, torch.fft.fftshift(full, dim=(-2, -1)), atol=1e-6)


def _smooth_volume(n, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, n, n))
    v = ndimage.gaussian_filter(v, 2.0)
    c = np.arange(n) - n // 2
    r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    return (v * (r < n / 2 - 4)).astype(np.float32)


def test_projector_matches_real_space_rotation_and_sum():
    """Independent of Fourier methods: rotate the volume in real space (RELION's A: projection of r is (A r)[:2])
    and sum along z."""
    n = 40
    vol = _smooth_volume(n)
    proj = FourierProjector(vol, 1.0)
    eul = sample_uniform_euler_relion(np.random.default_rng(3), 4)
    A = euler_to_matrix_relion(eul[:, 0], eul[:, 1], eul[:, 2])
    ours = proj.project(torch.as_tensor(A, dtype=torch.float32)).numpy()
    c = np.full(3, n // 2, float)
    for k in range(4):
        # rotated(r') = vol(A^T r') in (x, y, z); arrays are (z, y, x): reverse the axes of the matrix
        M = A[k].T[::-1, ::-1]
        rot = ndimage.affine_transform(vol, M, offset=c - M @ c, order=3)
        ref = rot.sum(axis=0)
        assert np.corrcoef(ours[k].ravel(), ref.ravel())[0, 1] > 0.995


def test_stack_renderer_equals_plain_formula():
    vol = _smooth_volume(32)
    proj = FourierProjector(vol, 2.0)
    rng = np.random.default_rng(1)
    eul = sample_uniform_euler_relion(rng, 5)
    ctfs = _random_ctfs(rng, 5)
    ctfs = [CTFParams(**{**c.as_dict(), "voltage_kV": 300.0}) for c in ctfs]
    shifts = rng.uniform(-4, 4, (5, 2))
    box = 48
    got = render_clean_stack(proj, eul, ctfs, box_px=box, shifts_px=shifts, batch=2).numpy()
    R = torch.as_tensor(euler_to_matrix_relion(eul[:, 0], eul[:, 1], eul[:, 2]), dtype=torch.float32)
    sigma2 = 2 * interaction_constant_rad_per_V_A(300.0)

    def plain(projector):
        spec = projector.project_rfft(R, box) * phase_shift_rfft2(shifts, box) * compute_ctf_2d(ctfs, (box, box), 2.0)
        return sigma2 * torch.fft.fftshift(torch.fft.irfft2(spec, s=(box, box)), dim=(-2, -1)).numpy()

    # a volume in a box as large as the images: sampled on the image grid directly, exactly the plain formula
    big = np.zeros((box,) * 3, np.float32)
    big[8:40, 8:40, 8:40] = vol
    ref = plain(FourierProjector(big, 2.0))
    assert np.allclose(render_clean_stack(FourierProjector(big, 2.0), eul, ctfs, box_px=box, shifts_px=shifts).numpy(),
                       ref, atol=1e-5 * np.abs(ref).max())
    # the small volume: sampled on its own grid and zero-padded, the same image up to trilinear interpolation error
    for a, b in zip(got, ref):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999
        assert np.abs(a - b).max() < 0.1 * np.abs(b).max()


def test_particle_patches_equal_the_plain_formula():
    vol = _smooth_volume(30)
    proj = FourierProjector(vol, 1.5)
    rng = np.random.default_rng(2)
    eul = sample_uniform_euler_relion(rng, 3)
    frac = rng.uniform(0, 1, (3, 2))
    ctfs = [CTFParams(10000, 9000, 10)] * 3
    c, p = render_particle_contrast(proj, eul, frac, ctfs, 1.5, 300.0)
    M, P = patch_sizes(30, delocalisation_px(ctfs, 1.5))
    assert p.shape == (3, M, M) and c.shape == (3, P, P) and M >= 30 and M % 2 == 0 and P >= 30 + 2 * delocalisation_px(ctfs, 1.5)
    R = torch.as_tensor(euler_to_matrix_relion(eul[:, 0], eul[:, 1], eul[:, 2]), dtype=torch.float32)
    sigma = interaction_constant_rad_per_V_A(300.0)
    ref = proj.project(R, M, shifts_px=frac).numpy() * sigma
    assert np.abs(p - ref).max() < 1e-4 * np.abs(ref).max()
    # the contrast patch: the plain formula with the volume in a P box (its native grid), through the CTF
    big = np.zeros((P, P, P), np.float32)
    o = P // 2 - 15
    big[o:o + 30, o:o + 30, o:o + 30] = vol
    spec = (FourierProjector(big, 1.5).project_rfft(R, P) * phase_shift_rfft2(frac, P)
            * compute_ctf_2d(ctfs, (P, P), 1.5) * sigma)
    ref_c = torch.fft.fftshift(torch.fft.irfft2(spec, s=(P, P)), dim=(-2, -1)).numpy()
    for a, b in zip(c, ref_c):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999
        assert np.abs(a - b).max() < 0.05 * np.abs(b).max()


def test_stack_noise_models():
    vol = _smooth_volume(32)
    proj = FourierProjector(vol, 2.0)
    rng = np.random.default_rng(4)
    eul = sample_uniform_euler_relion(rng, 64)
    ctfs = [CTFParams(15000, 14000, 30)] * 64
    st = simulate_particle_stack(proj, eul, ctfs, box_px=48, noise_mode="snr", snr=0.1, signal_radius_px=12,
                                 rng=np.random.default_rng(0))
    c = np.arange(48) - 24
    disc = c[:, None] ** 2 + c[None, :] ** 2 <= 144
    assert st.clean[:, disc].var() / (st.images - st.clean).var() == pytest.approx(0.1, rel=0.03)
    again = simulate_particle_stack(proj, eul, ctfs, box_px=48, noise_mode="snr", snr=0.1, signal_radius_px=12,
                                    rng=np.random.default_rng(0))
    assert np.array_equal(st.images, again.images)  # seeded
    g = simulate_particle_stack(proj, eul, ctfs, box_px=48, noise_mode="gaussian", noise_sd=0.5)
    assert (g.images - g.clean).std() == pytest.approx(0.5, rel=0.02)
    dose = 30.0
    po = simulate_particle_stack(proj, eul, ctfs, box_px=48, noise_mode="poisson", dose_e_per_A2=dose)
    area = dose * 4.0
    counts = (1 - po.images) * area
    assert np.allclose(counts, np.round(counts), atol=1e-3)
    assert (po.images - po.clean).var() == pytest.approx(1 / area, rel=0.05)
    with pytest.raises(ValueError, match="noise_mode"):
        simulate_particle_stack(proj, eul, ctfs, noise_mode="loud")
    with pytest.raises(ValueError, match="snr"):
        simulate_particle_stack(proj, eul, ctfs, noise_mode="snr", snr=0)


def test_crop_to_support_keeps_the_images():
    small = _smooth_volume(24)
    big = np.zeros((40, 40, 40), np.float32)
    big[8:32, 8:32, 8:32] = small
    cropped = crop_volume_to_support(big)
    assert cropped.shape[0] < 40 and cropped.shape[0] % 2 == 0
    eul = sample_uniform_euler_relion(np.random.default_rng(5), 3)
    ctfs = [CTFParams(12000, 11000, 40)] * 3
    a = render_clean_stack(FourierProjector(big, 2.0), eul, ctfs, box_px=40).numpy()
    b = render_clean_stack(FourierProjector(cropped, 2.0), eul, ctfs, box_px=40).numpy()
    assert min(np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b)) > 0.995
