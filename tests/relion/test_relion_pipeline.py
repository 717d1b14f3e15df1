"""The three GenEM programs as External jobs under Debian's real RELION 3.1.3 pipeliner, their outputs fed to
RELION's own programs (relion_reconstruct, an Extract job, relion_image_handler)."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _support import requires_relion
from genem.io import read_mrc, read_star, write_mrc, write_star
from genem_relion import job as J
from relion_project import RelionProject, write_wrapper

pytestmark = [requires_relion, pytest.mark.relion]

PIXEL_A = 4.0
BOX = 64


def _shell_index(n: int) -> np.ndarray:
    c = np.arange(n) - n // 2
    return np.rint(np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)).astype(int)


def fsc_and_cc(truth: np.ndarray, rec: np.ndarray) -> tuple[np.ndarray, float]:
    """FSC of the reconstruction against the ground truth (padded into its box, both centred at N//2) and
    their real-space correlation."""
    m, n = rec.shape[0], truth.shape[0]
    o = (m - n) // 2
    g = np.zeros_like(rec)
    g[o:o + n, o:o + n, o:o + n] = truth
    fa, fb = np.fft.fftshift(np.fft.fftn(g)), np.fft.fftshift(np.fft.fftn(rec))
    r = _shell_index(m).ravel()
    num = np.bincount(r, (fa * fb.conj()).real.ravel())
    den = np.sqrt(np.bincount(r, (np.abs(fa) ** 2).ravel()) * np.bincount(r, (np.abs(fb) ** 2).ravel()) + 1e-30)
    return (num / den)[: m // 2 + 1], float(np.corrcoef(g.ravel(), rec.ravel())[0, 1])


def reconstruct(project: RelionProject, star: str, out: str) -> np.ndarray:
    r = subprocess.run(["relion_reconstruct", "--i", star, "--o", out, "--ctf", "--j", "2"], cwd=project.root,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return read_mrc(project.root / out)[0]


def blob_map(box: int = 48, seed: int = 3) -> np.ndarray:
    """A compact random 'molecule' of Gaussian blobs (the test's input map)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:box, :box, :box] - box // 2
    vol = np.zeros((box,) * 3, np.float32)
    for _ in range(12):
        c = rng.normal(size=3)
        c = c / np.linalg.norm(c) * rng.uniform(0, 0.3 * box)
        s = rng.uniform(0.04, 0.09) * box
        vol += np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * s * s)).astype(np.float32)
    return vol


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("relion")
    proj = RelionProject(base / "project")
    proj.bin = base / "bin"  # wrappers live outside the project
    write_mrc(proj.root / "ref.mrc", blob_map(), PIXEL_A)
    # noise-free, no ice: the reconstruction then tests geometry and CTF (pose, origin, defocus conventions)
    (proj.root / "sim.json").write_text(json.dumps({"ice": "none", "min_separation_A": 150.0}))
    return proj


@pytest.fixture(scope="module")
def simulated(project):
    """One simulate job: 3 micrographs of 512^2, ~20 particles each, box 64."""
    exe = write_wrapper(project.bin, "genem_relion.simulate")
    job = project.add_external(exe, inputs={"in_3dref": "ref.mrc"}, threads=2, params={
        "n_micrographs": 3, "micrograph_size": 512, "box": BOX, "particles": 20, "noise_mode": "none",
        "defocus": "8000,15000", "config": "sim.json", "seed": 1, "gpu": ""})
    before = project.snapshot()
    status = project.run(job)
    return job, status, before


def test_simulate_job_finishes_with_its_output_nodes(project, simulated):
    job, status, before = simulated
    assert status == "finished", (project.root / job / "run.err").read_text()
    assert sorted(f for f in J.EXIT_FILES if (project.root / job / f).exists()) == [J.EXIT_SUCCESS]
    assert project.output_nodes(job) == {
        f"{job}micrographs.star": 1, f"{job}coords_suffix_genem.star": 2, f"{job}particles.star": 3,
        f"{job}dataset/ground_truth/structure_00.mrc": 6}
    assert project.changed_outside(before, job) == []
    run_out = (project.root / job / "run.out").read_text()
    assert "micrographs: 3/3 (100%)" in run_out


def test_relion_reconstruct_of_simulated_particles_matches_ground_truth(project, simulated):
    job, _, _ = simulated
    truth = read_mrc(project.root / job / "dataset/ground_truth/structure_00.mrc")[0]
    parts = read_star(project.root / job / "particles.star")
    assert len(parts["particles"]) >= 45
    fsc, cc = fsc_and_cc(truth, reconstruct(project, f"{job}particles.star", "rec_sim.mrc"))
    print(f"simulated particles: CC with ground truth {cc:.4f}, FSC at shells 4/8/12: {fsc[[4, 8, 12]].round(3)}")
    assert cc >= 0.95 and fsc[1:9].min() >= 0.8
    # control: the same images with shuffled poses do not reconstruct the map
    shuffled = parts["particles"].copy()
    rng = np.random.default_rng(0)
    for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"):
        shuffled[c] = rng.permutation(shuffled[c].to_numpy())
    write_star(project.root / "shuffled.star", {"optics": parts["optics"], "particles": shuffled})
    fsc_bad, cc_bad = fsc_and_cc(truth, reconstruct(project, "shuffled.star", "rec_shuffled.mrc"))
    print(f"control, shuffled poses: CC {cc_bad:.4f}, FSC at shells 4/8/12: {fsc_bad[[4, 8, 12]].round(3)}")
    assert fsc_bad[4:9].mean() < fsc[4:9].mean() - 0.3


def extract(project: RelionProject, mics_star: str, coords_node: str) -> tuple[str, pd.DataFrame]:
    """A real Extract job (box BOX, inverted, normalised) on micrographs and a coordinates node; its particles."""
    job = project.add_job("Extract", {
        "star_mics": mics_star, "coords_suffix": coords_node, "extract_size": BOX, "do_invert": "Yes",
        "do_norm": "Yes", "bg_diameter": -1, "nr_mpi": 1})
    assert project.run(job) == "finished", (project.root / job / "run.err").read_text()
    return job, read_star(project.root / job / "particles.star")["particles"]


def test_extract_job_on_simulated_micrographs_and_coordinates_reconstructs(project, simulated):
    sim, _, _ = simulated
    job, extracted = extract(project, f"{sim}micrographs.star", f"{sim}coords_suffix_genem.star")
    truth_parts = read_star(project.root / sim / "particles.star")["particles"]
    assert len(extracted) == len(truth_parts)
    # Extract kept the poses and sub-pixel origins the coordinate files carry
    np.testing.assert_allclose(np.sort(extracted["rlnAngleTilt"]), np.sort(truth_parts["rlnAngleTilt"]), atol=1e-4)
    truth = read_mrc(project.root / sim / "dataset/ground_truth/structure_00.mrc")[0]
    fsc, cc = fsc_and_cc(truth, reconstruct(project, f"{job}particles.star", "rec_extract.mrc"))
    print(f"Extract job particles: CC with ground truth {cc:.4f}, FSC at shells 4/8/12: {fsc[[4, 8, 12]].round(3)}")
    assert cc >= 0.95 and fsc[1:9].min() >= 0.8


def test_bad_input_fails_cleanly_under_the_pipeliner(project):
    (project.root / "broken.mrc").write_text("this is not an MRC map\n")
    exe = write_wrapper(project.bin, "genem_relion.simulate")
    job = project.add_external(exe, inputs={"in_3dref": "broken.mrc"}, params={"n_micrographs": 1})
    before = project.snapshot()
    assert project.run(job) == "failed"
    folder = project.root / job
    assert sorted(f for f in J.EXIT_FILES if (folder / f).exists()) == [J.EXIT_FAILURE]
    assert not (folder / J.NODES_FILE).exists()
    last = (folder / "run.err").read_text().strip().splitlines()[-1]
    assert last.startswith("genem-relion-simulate: error: ") and "broken.mrc" in last and "MRC" in last, last
    assert "Traceback" not in (folder / "run.err").read_text()
    assert project.changed_outside(before, job) == []


def test_abort_request_ends_as_aborted_under_the_pipeliner(project):
    exe = write_wrapper(project.bin, "genem_relion.simulate")
    job = project.add_external(exe, inputs={"in_3dref": "ref.mrc"}, params={
        "n_micrographs": 5000, "micrograph_size": 512, "box": BOX, "particles": 20, "noise_mode": "none",
        "config": "sim.json"})
    pipeliner = project.start(job)
    try:
        project.wait_for(project.root / job / "run.out", r"micrographs: [1-9]\d*/5000")
        (project.root / job / J.ABORT_NOW).touch()
        pipeliner.wait(timeout=120)
    finally:
        if pipeliner.poll() is None:
            pipeliner.kill()
    assert project.status(job) == "aborted"
    assert sorted(f for f in J.EXIT_FILES if (project.root / job / f).exists()) == [J.EXIT_ABORTED]
    assert "aborted on request" in (project.root / job / "run.out").read_text()


@pytest.fixture(scope="module")
def tiny_denoiser(project, simulated, tmp_path_factory):
    """A tiny model trained on the simulation's noisy/clean pairs (the adapter is under test, not the denoiser)."""
    from genem_relion.denoise import engine_available

    if not engine_available():
        pytest.skip("the GenEM denoiser (genem.restore.apply) is not on this branch")
    from genem.restore.train import TrainConfig, train_denoiser

    sim, _, _ = simulated
    model = train_denoiser([project.root / sim / "dataset"], tmp_path_factory.mktemp("model") / "model",
                           TrainConfig(steps=3, post_steps=0, batch_size=4, base_channels=8, checkpoint_every=3,
                                       sample_steps=2))
    return Path(model).parent if Path(model).is_file() else Path(model)


def test_denoise_job_keeps_every_column_and_relion_reads_the_images(project, simulated, tiny_denoiser):
    sim, _, _ = simulated
    model_dir = tiny_denoiser
    exe = write_wrapper(project.bin, "genem_relion.denoise")
    job = project.add_external(exe, inputs={"in_part": f"{sim}particles.star"},
                               params={"model": str(model_dir), "steps": 2, "batch_size": 16})
    before = project.snapshot()
    assert project.run(job) == "finished", (project.root / job / "run.err").read_text()
    out_star = f"{job}particles_denoised.star"
    assert project.output_nodes(job) == {out_star: 3}
    assert project.changed_outside(before, job) == []
    src = read_star(project.root / sim / "particles.star")
    out = read_star(project.root / out_star)
    pd.testing.assert_frame_equal(out["optics"], src["optics"])
    assert list(out["particles"].columns) == list(src["particles"].columns)
    pd.testing.assert_frame_equal(out["particles"].drop(columns="rlnImageName"),
                                  src["particles"].drop(columns="rlnImageName"))
    assert all(n.split("@")[1].startswith(f"{job}Denoised/") for n in out["particles"]["rlnImageName"])
    n = len(src["particles"])
    assert f"denoise: {n}/{n} (100%)" in (project.root / job / "run.out").read_text()  # the engine's progress
    # RELION's own image handler reads every denoised image through the STAR file
    r = subprocess.run(["relion_image_handler", "--i", out_star, "--stats"], cwd=project.root, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    stats = [ln for ln in r.stdout.splitlines() if "@" in ln and "Denoised" in ln]
    assert len(stats) == len(src["particles"]), r.stdout[-2000:]


def test_denoise_job_on_micrographs(project, simulated, tiny_denoiser):
    sim, _, _ = simulated
    exe = write_wrapper(project.bin, "genem_relion.denoise")
    job = project.add_external(exe, inputs={"in_mic": f"{sim}micrographs.star"},
                               params={"model": str(tiny_denoiser), "steps": 1, "tile": 128})
    assert project.run(job) == "finished", (project.root / job / "run.err").read_text()
    out_star = f"{job}micrographs_denoised.star"
    assert project.output_nodes(job) == {out_star: 1}
    src, out = read_star(project.root / sim / "micrographs.star"), read_star(project.root / out_star)
    pd.testing.assert_frame_equal(out["micrographs"].drop(columns="rlnMicrographName"),
                                  src["micrographs"].drop(columns="rlnMicrographName"))
    for a, b in zip(src["micrographs"]["rlnMicrographName"], out["micrographs"]["rlnMicrographName"]):
        assert b.startswith(f"{job}Denoised/")
        assert read_mrc(project.root / b)[0].shape == read_mrc(project.root / a)[0].shape


def test_translate_job_gives_real_noise_to_a_simulation(project, simulated, shared_data):
    import shutil

    sim, _, _ = simulated
    real = project.root / "Real"
    real.mkdir(exist_ok=True)
    shutil.copy(shared_data / "micrographs" / "ucsf_1142" / "Ucsf_stack_1142_DW.mrc", real / "mic1.mrc")
    optics = pd.DataFrame({"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
                           "rlnMicrographPixelSize": [PIXEL_A], "rlnVoltage": [300.0],
                           "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1]})
    write_star(real / "micrographs.star", {"optics": optics, "micrographs": pd.DataFrame(
        {"rlnMicrographName": ["Real/mic1.mrc"], "rlnOpticsGroup": [1]})})
    exe = write_wrapper(project.bin, "genem_relion.translate")
    job = project.add_external(exe, inputs={"in_mic": "Real/micrographs.star"}, threads=2, params={
        "simulated": sim, "steps": 1, "tile": 64, "batch_size": 1, "max_micrographs": 1})
    before = project.snapshot()
    assert project.run(job, timeout=600) == "finished", (project.root / job / "run.err").read_text()
    assert set(project.output_nodes(job).values()) == {1, 2, 3, 6}
    run_out = (project.root / job / "run.out").read_text()  # the engine's progress, through its callback
    assert "training steps: 1/1 (100%)" in run_out, run_out
    assert re.search(r"translated micrographs: (\d+)/\1 \(100%\)", run_out), run_out
    assert project.changed_outside(before, job) == []
    out = read_star(project.root / job / "particles.star")["particles"]
    src = read_star(project.root / sim / "particles.star")["particles"]
    np.testing.assert_allclose(out["rlnAngleRot"], src["rlnAngleRot"])  # annotations carried over exactly
    translated = read_mrc(project.root / job / "dataset" / "Micrographs" / "mic_000001.mrc")[0]
    clean = read_mrc(project.root / sim / "dataset" / "Micrographs" / "mic_000001.mrc")[0]
    assert translated.shape == clean.shape and not np.allclose(translated, clean / clean.std())
    r = subprocess.run(["relion_image_handler", "--i", f"{job}particles.star", "--stats"], cwd=project.root,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


# ------------------------------------------------------------------------------------------------ picking
PICK_DIAMETER_A = 150.0  # about the blob map's size (48 px at 4 A/px, blobs within 0.3 box of the centre)


@pytest.fixture(scope="module")
def picked(project, simulated):
    """genem-relion-pick (the training-free DoG picker) on the simulation's micrographs STAR."""
    sim, _, _ = simulated
    exe = write_wrapper(project.bin, "genem_relion.pick")
    job = project.add_external(exe, inputs={"in_mic": f"{sim}micrographs.star"},
                               params={"model": "dog", "diameter": PICK_DIAMETER_A})
    before = project.snapshot()
    status = project.run(job)
    return job, status, before


def _picks_of(project, coords_dir: str, mics: pd.DataFrame) -> pd.DataFrame:
    """Every coordinate file RELION 3.1's Extract reads for ``mics`` (its --coord_dir / --coord_suffix rule)."""
    from genem_relion.publish import coordinate_file_for

    rows = []
    for name in mics["rlnMicrographName"]:
        f = coordinate_file_for(name, Path(coords_dir))
        table = next(iter(read_star(project.root / f).values()))
        rows.append(table.assign(rlnMicrographName=name))
    return pd.concat(rows, ignore_index=True)


def test_pick_job_writes_coordinates_relion_reads_with_progress(project, simulated, picked):
    sim, _, _ = simulated
    job, status, before = picked
    assert status == "finished", (project.root / job / "run.err").read_text()
    assert sorted(f for f in J.EXIT_FILES if (project.root / job / f).exists()) == [J.EXIT_SUCCESS]
    assert project.output_nodes(job) == {f"{job}coords_suffix_genem.star": 2}
    assert project.changed_outside(before, job) == []
    run_out = (project.root / job / "run.out").read_text()
    assert "picked micrographs: 3/3 (100%)" in run_out, run_out  # the engine's progress, through its callback
    mics = read_star(project.root / sim / "micrographs.star")["micrographs"]
    picks = _picks_of(project, job, mics)
    # the coordinates RELION reads are the engine's own picks, micrograph by micrograph
    from genem.pick import read_coordinates_star

    assert len(picks) > 0
    for name, grp in picks.groupby("rlnMicrographName"):
        xy, fom = read_coordinates_star(project.root / job / "genem_picks" / "picks" / f"{Path(name).stem}.star")
        np.testing.assert_array_equal(grp[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(float), xy)
        np.testing.assert_array_equal(grp["rlnAutopickFigureOfMerit"].to_numpy(float), fom)


def test_extract_job_on_picked_coordinates_extracts_every_pick(project, simulated, picked):
    sim, _, _ = simulated
    pick, _, _ = picked
    job, extracted = extract(project, f"{sim}micrographs.star", f"{pick}coords_suffix_genem.star")
    picks = _picks_of(project, pick, read_star(project.root / sim / "micrographs.star")["micrographs"])
    assert len(extracted) == len(picks) > 0
    key = ["rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY"]
    got = extracted[key].sort_values(key).reset_index(drop=True)
    want = picks[key].sort_values(key).reset_index(drop=True)
    assert list(got["rlnMicrographName"]) == list(want["rlnMicrographName"])
    np.testing.assert_allclose(got[key[1:]].to_numpy(float), want[key[1:]].to_numpy(float), atol=1e-3)
    # RELION's own image handler reads every extracted particle
    r = subprocess.run(["relion_image_handler", "--i", f"{job}particles.star", "--stats"], cwd=project.root,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
