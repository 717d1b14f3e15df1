"""The simulator end to end: determinism, shards, resume, SNR mode, outputs, bad input."""
import filecmp
import json
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from genem.io import GenemDataset
from genem.simulate import SimulationConfig, run_simulation
from genem.simulate.imaging import image_micrograph
from genem.simulate.pipeline import _Prepared, micrograph_seed, simulate_micrograph

SMALL = dict(n_micrographs=3, micrograph_size_px=(384, 384), pixel_size_A=3.0, particle_box_px=48,
             particles_per_micrograph=6, seed=7)


def _run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "genem", *args], capture_output=True, text=True, cwd=cwd)


def test_dataset_layout_and_ground_truth(tmp_path):
    root = run_simulation(SimulationConfig(**SMALL), tmp_path / "sim")
    ds = GenemDataset.open(root)
    mics, parts = ds.micrographs(), ds.particles()
    assert len(mics) == 3 and len(parts) == 18
    assert ds.pixel_size_A == 3.0
    for col in ("rlnCoordinateX", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnDefocusU",
                "rlnVoltage", "rlnImagePixelSize", "rlnImageSize"):
        assert col in parts.columns
    # every STAR path is relative and exists
    for name in mics["rlnMicrographName"]:
        assert not Path(name).is_absolute() and (root / name).exists()
    imgs = ds.read_particle_images(parts.iloc[:4])
    clean = ds.read_particle_images(parts.iloc[:4], column="rlnGenemCleanImageName")
    assert imgs.shape == (4, 48, 48) and clean.shape == (4, 48, 48)
    # origins are minus the sub-pixel offset of the true centre from the box centre
    frac = parts["rlnCoordinateX"] - np.floor(parts["rlnCoordinateX"])
    assert np.allclose(parts["rlnOriginXAngst"], -frac * 3.0)
    # masks label exactly the particles, at their coordinates
    m0 = ds.read_micrograph(mics["rlnMicrographName"][0], "mask")
    p0 = parts[parts["rlnMicrographName"] == mics["rlnMicrographName"][0]]
    assert set(np.unique(m0)) - {0} == set(range(1, len(p0) + 1))
    for k, (_, r) in enumerate(p0.iterrows(), start=1):
        yy, xx = np.nonzero(m0 == k)
        assert abs(xx.mean() - r["rlnCoordinateX"]) < 4 and abs(yy.mean() - r["rlnCoordinateY"]) < 4
    # the clean particle (noise-free, normalised like the noisy one) explains the noisy one
    assert np.mean([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(imgs, clean)]) > 0.1
    man = json.loads((root / "manifest.json").read_text())
    assert man["config"]["seed"] == 7 and man["n_particles"] == 18 and "command_line" in man
    assert (root / "preview.png").stat().st_size > 1000
    assert (root / "ground_truth" / "structure_00.mrc").exists()
    assert not list(root.rglob("*.tmp-*"))


def test_shards_reproduce_a_full_run_and_resume(tmp_path):
    cfg = SimulationConfig(**SMALL)
    full = run_simulation(cfg, tmp_path / "full")
    sh = tmp_path / "sharded"
    run_simulation(cfg, sh, shard=(1, 2))
    assert not (sh / "manifest.json").exists()  # incomplete: no completion mark
    run_simulation(cfg, sh, shard=(0, 2))
    for rel in ["micrographs.star", "particles.star", "Micrographs/mic_000002.mrc", "Particles/mic_000003.mrcs",
                "Masks/mic_000001.mrc", "Coordinates/mic_000002_coords.star"]:
        assert filecmp.cmp(full / rel, sh / rel, shallow=False), rel
    # an interrupted run: a lost micrograph and its record are redone identically
    (sh / "Micrographs/mic_000002.mrc").unlink()
    (sh / ".parts/mic_000002.json").unlink()
    (sh / "manifest.json").unlink()
    run_simulation(cfg, sh)
    assert filecmp.cmp(full / "Micrographs/mic_000002.mrc", sh / "Micrographs/mic_000002.mrc", shallow=False)
    # other parameters into the same folder are refused
    with pytest.raises(Exception, match="other parameters"):
        run_simulation(cfg.replace(seed=8), sh)


def test_snr_mode_hits_requested_snr():
    """SNR = var(particle signal inside the masks) / var(noise), measured independently of the generator."""
    cfg = SimulationConfig(**{**SMALL, "micrograph_size_px": (768, 768), "particles_per_micrograph": 20},
                           noise_mode="snr", snr=0.05, ice="none")
    prep = _Prepared(cfg, "cpu")
    for i in range(2):
        img, row, parts, spec = simulate_micrograph(cfg, prep, i)
        signal = img.clean - 1.0  # no ice: intensity = 1 - 2 contrast
        noise = img.noisy - img.clean
        measured = signal[img.mask > 0].var() / noise.var()
        assert measured == pytest.approx(0.05, rel=0.05)


def test_poisson_mode_background_is_dose(tmp_path):
    cfg = SimulationConfig(**{**SMALL, "n_micrographs": 1}, ice="none", dose_e_per_A2=30.0, noise_mode="poisson")
    root = run_simulation(cfg, tmp_path / "p")
    ds = GenemDataset.open(root)
    name = ds.micrographs()["rlnMicrographName"][0]
    noisy, mask = ds.read_micrograph(name), ds.read_micrograph(name, "mask")
    bg = noisy[mask == 0]
    assert bg.mean() == pytest.approx(30.0 * 9.0, rel=0.02)  # dose x pixel area, vacuum-like background
    assert np.all(noisy == np.round(noisy))  # counts


def test_poisson_mode_records_its_snr_which_grows_with_dose():
    """In poisson mode rlnGenemSnr = var(particle signal inside the masks) / shot-noise variance, measured here
    from the images themselves; shot-noise SNR is proportional to the dose."""
    recorded = []
    for dose in (5.0, 20.0):
        cfg = SimulationConfig(**{**SMALL, "micrograph_size_px": (768, 768), "particles_per_micrograph": 20},
                               noise_mode="poisson", dose_e_per_A2=dose, ice="none")
        img, row, _, _ = simulate_micrograph(cfg, _Prepared(cfg, "cpu"), 0)
        expected_counts = dose * 9.0
        measured = img.clean[img.mask > 0].var() / expected_counts  # clean = expected counts; Poisson var = mean
        assert row["rlnGenemSnr"] == pytest.approx(measured, rel=0.05)
        recorded.append(row["rlnGenemSnr"])
    assert recorded[1] / recorded[0] == pytest.approx(4.0, rel=0.02)


def test_default_cli_run(tmp_path):
    r = _run_cli("simulate", "--out", str(tmp_path / "d"), "--n-micrographs", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d" / "manifest.json").exists()


def _bad_map(tmp_path, shape=(32, 32, 40), voxel=2.0):
    p = tmp_path / "noncubic.mrc"
    with mrcfile.new(p) as m:
        m.set_data(np.random.default_rng(0).random(shape).astype(np.float32))
        m.voxel_size = voxel
    return p


@pytest.mark.parametrize("case", ["missing", "corrupt", "noncubic", "nopixel", "negdefocus", "snr0", "crowded"])
def test_bad_input_one_line_error_nonzero_exit_no_finished_output(tmp_path, case):
    out = tmp_path / "out"
    args = ["simulate", "--out", str(out), "--n-micrographs", "1", "--micrograph-size", "256", "--box", "48",
            "--pixel-size-A", "3", "--no-progress"]
    if case == "missing":
        args += ["--structure", str(tmp_path / "nope.pdb")]
    elif case == "corrupt":
        bad = tmp_path / "corrupt.mrc"
        bad.write_bytes(b"\x00" * 300)
        args += ["--structure", str(bad)]
    elif case == "noncubic":
        args += ["--structure", str(_bad_map(tmp_path))]
    elif case == "nopixel":
        args += ["--structure", str(_bad_map(tmp_path, shape=(32, 32, 32), voxel=0.0))]
    elif case == "negdefocus":
        args += ["--defocus-A", "20000,10000"]
    elif case == "snr0":
        args += ["--noise-mode", "snr", "--snr", "0"]
    elif case == "crowded":
        args += ["--particles", "5000"]
    r = _run_cli(*args)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("genem: error:"), r.stderr
    if case in ("missing", "corrupt", "noncubic", "nopixel"):
        assert Path(args[args.index("--structure") + 1]).name in lines[0]
    assert not (out / "manifest.json").exists()
