"""Physics against analytic values and limits."""
import math

import numpy as np
import pytest
import torch

from genem.physics import CTFParams, compute_ctf_2d, euler_to_matrix_relion, matrix_to_euler_relion, wavelength_A
from genem.physics.constants import H2_OVER_2PI_M0_E_V_A2, interaction_constant_rad_per_V_A
from genem.physics.detector import expected_counts, sample_shot_noise
from genem.physics.ice import estimate_ice_thickness_icebreaker, random_ice_thickness_nm
from genem.physics.potential import peng_coefficients, potential_from_atoms
from genem.physics.projection import FourierProjector
from genem.physics.rotations import sample_uniform_euler_relion


def test_wavelength_300kV():
    assert wavelength_A(300) == pytest.approx(0.019687, abs=1e-6)
    assert wavelength_A(200) == pytest.approx(0.025079, abs=5e-6)


def test_interaction_constant_300kV():
    # Kirkland: sigma = 6.526e-4 rad/(V*A) at 300 kV
    assert interaction_constant_rad_per_V_A(300) == pytest.approx(6.526e-4, rel=2e-3)


@pytest.mark.parametrize("q0", [0.0, 0.07, 0.1, 0.3])
def test_ctf_at_zero_frequency_is_amplitude_contrast(q0):
    p = CTFParams(defocus_u_A=15000, defocus_v_A=12000, defocus_angle_deg=33, amplitude_contrast=q0)
    ctf = compute_ctf_2d(p, (64, 64), 1.0)
    assert float(ctf[0, 0]) == pytest.approx(q0, abs=1e-6)


def test_ctf_astigmatism_angle_and_zero_crossing():
    """Along the direction of the defocus angle the defocus is U: first zero where gamma = -pi (no Cs, no Q0)."""
    U, V, px, n = 20000.0, 10000.0, 1.0, 512
    p = CTFParams(defocus_u_A=U, defocus_v_A=V, defocus_angle_deg=0.0, cs_mm=0.0, amplitude_contrast=0.0)
    ctf = compute_ctf_2d(p, (n, n), px).numpy()
    lam = wavelength_A(300)
    u0 = math.sqrt(1.0 / (lam * U))  # pi*lam*U*u^2 = pi
    along_x = ctf[0, :]  # k_y = 0: theta = 0 = angle -> defocus U
    k = np.fft.rfftfreq(n, d=px)
    first_zero = k[np.argmax(np.diff(np.sign(along_x[1:])) != 0) + 1]
    assert first_zero == pytest.approx(u0, abs=2.0 / (n * px))
    # rotating the angle by 90 degrees puts V on the x axis
    p90 = CTFParams(defocus_u_A=U, defocus_v_A=V, defocus_angle_deg=90.0, cs_mm=0.0, amplitude_contrast=0.0)
    ctf90 = compute_ctf_2d(p90, (n, n), px).numpy()[0, :]
    v0 = math.sqrt(1.0 / (lam * V))
    fz = k[np.argmax(np.diff(np.sign(ctf90[1:])) != 0) + 1]
    assert fz == pytest.approx(v0, abs=2.0 / (n * px))


def test_ctf_bfactor_envelope():
    p0 = CTFParams(defocus_u_A=10000, defocus_v_A=10000)
    pb = CTFParams(defocus_u_A=10000, defocus_v_A=10000, bfactor_A2=100.0)
    c0, cb = compute_ctf_2d(p0, (128, 128), 1.5), compute_ctf_2d(pb, (128, 128), 1.5)
    kx = torch.fft.rfftfreq(128, d=1.5)
    ratio = (cb[0, 10:] / c0[0, 10:]).numpy()
    good = np.abs(c0[0, 10:].numpy()) > 0.1
    assert np.allclose(ratio[good], np.exp(-100.0 / 4 * kx[10:].numpy() ** 2)[good], rtol=1e-4)


def test_ctf_beam_tilt_is_pure_phase():
    p = CTFParams(defocus_u_A=10000, defocus_v_A=10000, beam_tilt_x_mrad=0.5)
    c = compute_ctf_2d(p, (64, 64), 1.0)
    c0 = compute_ctf_2d(CTFParams(defocus_u_A=10000, defocus_v_A=10000), (64, 64), 1.0)
    assert c.is_complex()
    assert torch.allclose(c.abs(), c0.abs(), atol=1e-5)
    assert float(c.angle().abs().max()) > 0.1


def test_envelopes_only_attenuate():
    base = dict(defocus_u_A=15000, defocus_v_A=15000)
    c0 = compute_ctf_2d(CTFParams(**base), (128, 128), 1.0).abs()
    c1 = compute_ctf_2d(CTFParams(**base, illumination_semiangle_mrad=0.05, defocus_spread_A=50.0), (128, 128), 1.0).abs()
    assert torch.all(c1 <= c0 + 1e-6)
    assert float(c1[0, 60]) < 0.9 * float(c0[0, 60]) or float(c0[0, 60]) < 0.05


def test_single_atom_potential_integral():
    """Voxel-integrated Peng Gaussians: the volume integral is 47.878 * sum(a_i) V*A^3, whatever the pixel size."""
    a, _ = peng_coefficients("C")
    for px in (0.5, 1.0, 2.0):
        vol = potential_from_atoms(np.zeros((1, 3)), ["C"], 32, px)
        assert vol.sum() * px ** 3 == pytest.approx(H2_OVER_2PI_M0_E_V_A2 * a.sum(), rel=1e-4)


def test_projection_identity_is_sum_along_z():
    rng = np.random.default_rng(0)
    pos = rng.normal(scale=6.0, size=(200, 3))
    vol = potential_from_atoms(pos, ["C"] * 200, 48, 1.0, bfactors_A2=np.full(200, 20.0))
    img = FourierProjector(vol, 1.0).project(np.eye(3)[None])[0].numpy()
    ref = vol.sum(0) * 1.0
    assert np.corrcoef(img.ravel(), ref.ravel())[0, 1] > 0.998
    assert img.sum() == pytest.approx(ref.sum(), rel=1e-3)


def test_projection_follows_relion_pose_convention():
    """A single off-centre atom at r projects to (A r)[:2] from the box centre."""
    n, px = 64, 1.0
    r = np.array([8.0, -5.0, 11.0])  # x, y, z in A
    vol = potential_from_atoms(r[None], ["O"], n, px, bfactors_A2=[30.0], center=False)
    P = FourierProjector(vol, px)
    for ang in [(30, 60, 90), (-120, 35, 10), (200, 150, -70)]:
        A = euler_to_matrix_relion(*ang)
        img = P.project(A[None])[0].numpy()
        yy, xx = np.unravel_index(np.argmax(img), img.shape)
        expect = A @ r
        assert xx - n // 2 == pytest.approx(expect[0], abs=1.0)
        assert yy - n // 2 == pytest.approx(expect[1], abs=1.0)


def test_euler_round_trip_and_uniform_sampling():
    rng = np.random.default_rng(1)
    e = sample_uniform_euler_relion(rng, 20000)
    A = euler_to_matrix_relion(e[:, 0], e[:, 1], e[:, 2])
    back = np.stack(matrix_to_euler_relion(A), -1)
    assert np.allclose(euler_to_matrix_relion(back[:, 0], back[:, 1], back[:, 2]), A, atol=1e-9)
    # Haar measure: mean rotation matrix ~ 0, cos(tilt) uniform on [-1, 1]
    assert np.abs(A.mean(0)).max() < 0.02
    assert np.abs(np.cos(np.deg2rad(e[:, 1])).mean()) < 0.02
    assert np.cos(np.deg2rad(e[:, 1])).std() == pytest.approx(1 / np.sqrt(3), abs=0.01)


def test_vacuum_mean_dose_and_poisson_variance():
    rng = np.random.default_rng(2)
    dose, px = 40.0, 1.2
    lam = expected_counts(np.ones((512, 512)), dose, px)
    counts = sample_shot_noise(rng, lam)
    assert lam.mean() == pytest.approx(dose * px * px, rel=1e-6)
    assert counts.mean() == pytest.approx(dose * px * px, rel=5e-3)
    assert counts.var() == pytest.approx(counts.mean(), rel=0.02)


def test_ice_maps():
    rng = np.random.default_rng(3)
    t = random_ice_thickness_nm(rng, (256, 256), 50.0, 5.0, 40.0)
    assert t.mean() == pytest.approx(50.0, abs=2.0) and t.min() >= 0
    # Icebreaker estimate: a darker half (thicker ice) must come out thicker, by Beer-Lambert
    img = np.full((256, 256), 100.0)
    img[:, 128:] = 100.0 * np.exp(-20.0 / 350.0)
    img += rng.normal(0, 3, img.shape)
    est = estimate_ice_thickness_icebreaker(img, mean_thickness_nm=50.0, mfp_nm=350.0, lowpass_px=4, patch_px=16,
                                            n_groups=4, smooth_px=2)
    assert est[:, 160:].mean() - est[:, :96].mean() == pytest.approx(20.0, abs=3.0)
