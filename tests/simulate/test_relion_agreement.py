"""The simulator against RELION 3.1's own programs (skipped when the RELION binaries are absent).

(a) FourierProjector projections (with origin shifts, with and without CTF) against ``relion_project`` for general
    angles: a pose, shift or CTF-angle convention error drops the per-image correlation below 0.99 (measured 0.07-0.58 for a flipped
    shift, 0.96-0.985 for a mirrored defocus angle).
(b) ``relion_reconstruct`` of 200 noise-free simulated particles against the ground-truth potential: once with a
    real defocus and astigmatism (``--ctf``), once imaged with a CTF of exactly 1 (no ``--ctf``). Measured on the
    ``--ctf`` data: the right conventions give CC 0.98 within the Nyquist sphere and FSC >= 0.98 to 0.9 Nyquist; a
    flipped origin sign gives CC 0.14, negated psi 0.11, A^T for A 0.22, swapped origin x/y 0.87, a negated defocus
    angle 0.92 (FSC down to 0.3 at high resolution), 90 - angle 0.86.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from genem.io import read_mrc, read_star, write_mrc, write_star
from genem.physics.ctf import CTFParams
from genem.physics.projection import FourierProjector
from genem.physics.rotations import euler_to_matrix_relion, sample_uniform_euler_relion
from genem.simulate import SimulationConfig, run_simulation
from genem.simulate.config import DEFAULT_STRUCTURE
from genem.simulate.stacks import render_clean_stack
from genem.simulate.structures import load_potential

pytestmark = pytest.mark.skipif(
    not (shutil.which("relion_project") and shutil.which("relion_reconstruct")),
    reason="RELION binaries (relion_project, relion_reconstruct; Debian package relion) not installed")

PIXEL_A = 3.0


def _shell_index(n: int) -> np.ndarray:
    c = np.arange(n) - n // 2
    return np.rint(np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)).astype(int)


def fsc_curve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fourier shell correlation of two cubic maps, shells 0..n/2 (1-voxel-wide)."""
    n = a.shape[0]
    fa, fb = np.fft.fftshift(np.fft.fftn(a)), np.fft.fftshift(np.fft.fftn(b))
    r = _shell_index(n).ravel()
    num = np.bincount(r, (fa * fb.conj()).real.ravel())
    da = np.bincount(r, (np.abs(fa) ** 2).ravel())
    db = np.bincount(r, (np.abs(fb) ** 2).ravel())
    return (num / np.sqrt(da * db + 1e-30))[: n // 2 + 1]


def lowpass(v: np.ndarray, shell: float) -> np.ndarray:
    f = np.fft.fftshift(np.fft.fftn(v))
    f[_shell_index(v.shape[0]) > shell] = 0
    return np.fft.ifftn(np.fft.ifftshift(f)).real


def compare_to_truth(truth: np.ndarray, rec: np.ndarray) -> dict:
    """FSC, the shell where it first drops below 0.143, and the correlation within the Nyquist sphere."""
    m, n = rec.shape[0], truth.shape[0]
    o = (m - n) // 2
    g = np.zeros_like(rec)
    g[o:o + n, o:o + n, o:o + n] = truth  # ground truth in the reconstruction's box (both centred at N//2)
    f = fsc_curve(g, rec)
    below = np.nonzero(f[1:] < 0.143)[0]
    cut = int(below[0]) + 1 if len(below) else m // 2 + 1
    cc = float(np.corrcoef(lowpass(g, m // 2).ravel(), lowpass(rec, m // 2).ravel())[0, 1])
    return {"fsc": f, "fsc0143_shell": cut, "nyquist_shell": m // 2, "cc_nyquist": cc}


@pytest.fixture(scope="module")
def potential_map(tmp_path_factory):
    pot = load_potential(DEFAULT_STRUCTURE, PIXEL_A)
    d = tmp_path_factory.mktemp("relion_project")
    write_mrc(d / "map.mrc", pot.volume_V, PIXEL_A)
    return d, pot.volume_V


def _run_relion(args, cwd):
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{args[0]} failed: {r.stderr[-2000:]}"


@pytest.mark.parametrize("with_ctf", [False, True], ids=["projection", "projection_ctf"])
def test_projections_match_relion_project(potential_map, with_ctf):
    d, vol = potential_map
    n = vol.shape[0]
    rng = np.random.default_rng(11)
    k = 12
    eul = sample_uniform_euler_relion(rng, k)  # general angles: identity-only agreement would hide A vs A^T
    shift_px = rng.uniform(-3, 3, (k, 2))  # particle centre offset from the box centre (x, y)
    du = rng.uniform(8000, 20000, k)
    astig = rng.uniform(1000, 2000, k)
    ang = rng.uniform(0, 180, k)
    optics = pd.DataFrame({"rlnOpticsGroupName": ["g1"], "rlnOpticsGroup": [1], "rlnVoltage": [300.0],
                           "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1],
                           "rlnImagePixelSize": [PIXEL_A], "rlnImageSize": [n], "rlnImageDimensionality": [2]})
    parts = pd.DataFrame({"rlnAngleRot": eul[:, 0], "rlnAngleTilt": eul[:, 1], "rlnAnglePsi": eul[:, 2],
                          "rlnOriginXAngst": -shift_px[:, 0] * PIXEL_A, "rlnOriginYAngst": -shift_px[:, 1] * PIXEL_A,
                          "rlnDefocusU": du, "rlnDefocusV": du - astig, "rlnDefocusAngle": ang, "rlnOpticsGroup": 1})
    write_star(d / "angles.star", {"optics": optics, "particles": parts})
    _run_relion(["relion_project", "--i", "map.mrc", "--ang", "angles.star", "--o", "proj", "--angpix", str(PIXEL_A)]
                + (["--ctf"] if with_ctf else []), d)
    relion, _ = read_mrc(d / "proj.mrcs")
    assert relion.shape == (k, n, n)

    proj = FourierProjector(vol, PIXEL_A)
    R = torch.as_tensor(euler_to_matrix_relion(eul[:, 0], eul[:, 1], eul[:, 2]), dtype=torch.float32)
    ctfs = [CTFParams(u, u - a, t) for u, a, t in zip(du, astig, ang)]
    if with_ctf:  # the stack renderer: 2 sigma_e CTF * projection, the sign of RELION's CTF * projection
        ours = render_clean_stack(proj, eul, ctfs, shifts_px=shift_px).numpy()
    else:
        ours = proj.project(R, shifts_px=shift_px).numpy()
    cc = np.array([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(ours, relion)])
    print(f"per-image CC with relion_project (ctf={with_ctf}): min {cc.min():.5f} mean {cc.mean():.5f}")
    assert cc.min() >= 0.99, cc
    # one consistent scale for every pose (RELION's map units differ from ours by a constant)
    ratio = ours.std(axis=(1, 2)) / relion.std(axis=(1, 2))
    assert ratio.std() / ratio.mean() < 0.01, ratio
    if with_ctf:  # the defocus angle counts: the mirrored angle must not pass
        bad = render_clean_stack(proj, eul, [CTFParams(u, u - a, -t) for u, a, t in zip(du, astig, ang)],
                                 shifts_px=shift_px).numpy()
        cc_bad = np.array([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(bad, relion)])
        assert cc_bad.mean() < cc.mean() - 0.005


def _simulate(tmp_path_factory, name, **kw):
    cfg = SimulationConfig(n_micrographs=8, micrograph_size_px=(512, 512), pixel_size_A=PIXEL_A, particle_box_px=64,
                           particles_per_micrograph=25, min_separation_A=200.0, noise_mode="none", ice="none",
                           seed=5, **kw)
    return run_simulation(cfg, tmp_path_factory.mktemp(name) / "ds")


def _reconstruct(root, ctf: bool) -> np.ndarray:
    _run_relion(["relion_reconstruct", "--i", "particles.star", "--o", "rec.mrc", "--j", "2"]
                + (["--ctf"] if ctf else []), root)
    rec, _ = read_mrc(root / "rec.mrc")
    return rec


@pytest.mark.parametrize("with_ctf", [True, False], ids=["reconstruct_ctf", "reconstruct_no_ctf"])
def test_relion_reconstruct_of_simulated_particles_matches_truth(tmp_path_factory, with_ctf):
    if with_ctf:
        # real CTFs: underfocus with strong astigmatism (so a defocus-angle error shows), Cs 2.7 mm, Q0 0.1
        root = _simulate(tmp_path_factory, "rec_ctf", defocus_A=(3000.0, 8000.0), astigmatism_A=(1000.0, 2000.0))
    else:
        # an ideal in-focus phase plate: Cs 0, defocus 0, Q0 0, 90 deg -> CTF = -sin(-pi/2) = 1 at every frequency
        root = _simulate(tmp_path_factory, "rec_no_ctf", defocus_A=0.0, astigmatism_A=0.0, cs_mm=0.0,
                         amplitude_contrast=0.0, phase_shift_deg=90.0)
    n_parts = len(read_star(root / "particles.star")["particles"])
    assert n_parts >= 200
    truth, _ = read_mrc(root / "ground_truth" / "structure_00.mrc")
    res = compare_to_truth(truth, _reconstruct(root, with_ctf))
    f, ny = res["fsc"], res["nyquist_shell"]
    print(f"relion_reconstruct ctf={with_ctf} ({n_parts} particles): CC within Nyquist {res['cc_nyquist']:.4f}, "
          f"FSC 0.143 at shell {res['fsc0143_shell']} of {ny}, FSC at 0.9 Nyquist {f[int(0.9 * ny)]:.3f}, "
          f"min FSC to 0.9 Nyquist {f[1:int(0.9 * ny) + 1].min():.3f}")
    assert res["fsc0143_shell"] >= int(0.95 * ny)  # resolution at FSC 0.143 within 5% of Nyquist
    assert f[1:int(0.9 * ny) + 1].min() >= 0.85
    assert res["cc_nyquist"] >= 0.95
