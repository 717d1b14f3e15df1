"""One contract, every adapter. An adapter holds no numerics: platform inputs -> engine config -> engine ->
platform outputs. So, for each adapter:

1. ground truth passes through unchanged: particles that the adapter delivers in its platform's format, read
   back into RELION convention, equal the engine's own dataset (poses as rotations, origins, CTF, coordinates,
   order) and point at the very same pixels;
2. bad input fails with a non-zero exit and one last error line that names the offending file;
3. nothing is written into the input's folder.

The same three clauses hold for picking: the picks each adapter delivers in its platform's format (RELION
coordinate files where Extract reads them, cryoSPARC particles with ``location``), read back, equal the engine's
own picks of the same micrographs (``genem.pick.pick_micrographs``).

The Scipion adapter runs in its own virtual environment; its protocol tests (tests/scipion) make the same
checks on the Scipion sets (alignments and CTF taken back out equal the engine's STAR; the SetOfCoordinates of
'genem - pick particles' equals the engine's picks in whole pixels; a folder that is no picker fails naming it).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genem.io import GenemDataset, read_particles_star, read_stack_images
from genem.io.star import merge_optics, split_image_name
from genem.physics.rotations import euler_to_matrix_relion
from genem.simulate import SimulationConfig, run_simulation

ROOT = Path(__file__).resolve().parents[2]
SIM = dict(n_micrographs=2, micrograph_size_px=(320, 320), pixel_size_A=3.0, particle_box_px=48,
           particles_per_micrograph=5, seed=11, ice="none")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins" / "relion"), str(ROOT / "plugins" / "cryosparc"),
                                         env.get("PYTHONPATH", "")])
    return env


def _run(args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


# ---- adapters: each turns an engine dataset (or its parameters) into platform output and reads it back ----------

class RelionAdapter:
    name = "relion"

    def deliver(self, engine_root: Path, work: Path) -> tuple[pd.DataFrame, Path]:
        """Run genem-relion-simulate with the same parameters as the engine run; particles.star node read back."""
        proj = work / "relion_project"
        proj.mkdir()
        args = ["-m", "genem_relion.simulate", "--o", "External/job001/", "--model",
                str(SimulationConfig().structures[0].path), "--n_micrographs", str(SIM["n_micrographs"]),
                "--micrograph_size", str(SIM["micrograph_size_px"][0]), "--pixel_size", str(SIM["pixel_size_A"]),
                "--box", str(SIM["particle_box_px"]), "--particles", str(SIM["particles_per_micrograph"]),
                "--seed", str(SIM["seed"]), "--config", str(work / "extra.json"), "--j", "1",
                "--pipeline_control", "External/job001/"]
        (work / "extra.json").write_text('{"ice": "none"}')
        r = _run(args, proj)
        assert r.returncode == 0, r.stderr[-2000:]
        assert (proj / "External/job001/RELION_JOB_EXIT_SUCCESS").exists()
        optics, parts = read_particles_star(proj / "External/job001/particles.star")
        return merge_optics(optics, parts), proj  # image paths relative to the RELION project

    def bad_input(self, work: Path):
        """(command, working folder, the broken input); the input sits in its own folder ``work/inputs``."""
        proj = work / "relion_project_bad"
        proj.mkdir()
        broken = work / "inputs" / "broken.mrc"
        broken.write_text("not an MRC file\n")
        return ["-m", "genem_relion.simulate", "--o", "External/job001/", "--in_3dref", str(broken)], proj, broken


class CryosparcOfflineAdapter:
    name = "cryosparc"

    def deliver(self, engine_root: Path, work: Path) -> tuple[pd.DataFrame, Path]:
        """Export the engine dataset as .cs (Import Result Group), then import that .cs back to STAR."""
        r = _run(["-m", "genem_cryosparc", "export", str(engine_root), "--out", str(work / "export")], work)
        assert r.returncode == 0, r.stderr[-2000:]
        cs = next((work / "export").glob("*particles*.cs"))
        r = _run(["-m", "genem_cryosparc", "import", str(cs), "--out", str(work / "import")], work)
        assert r.returncode == 0, r.stderr[-2000:]
        optics, parts = read_particles_star(work / "import" / "particles.star")
        return merge_optics(optics, parts), work / "import"

    def bad_input(self, work: Path):
        broken = work / "inputs" / "broken.cs"
        broken.write_bytes(b"\x93NUMPY garbage")
        return ["-m", "genem_cryosparc", "import", str(broken), "--out", str(work / "out")], work, broken


ADAPTERS = [RelionAdapter(), CryosparcOfflineAdapter()]


@pytest.fixture(scope="module")
def engine_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine") / "sim"
    run_simulation(SimulationConfig(**SIM), root)
    return root


def assert_same_ground_truth(ref: pd.DataFrame, ref_root: Path, got: pd.DataFrame, got_root: Path) -> None:
    assert len(got) == len(ref), f"{len(got)} particles delivered, engine has {len(ref)}"
    A_ref = euler_to_matrix_relion(ref["rlnAngleRot"], ref["rlnAngleTilt"], ref["rlnAnglePsi"])
    A_got = euler_to_matrix_relion(got["rlnAngleRot"], got["rlnAngleTilt"], got["rlnAnglePsi"])
    np.testing.assert_allclose(A_got, A_ref, atol=1e-4)
    for col, tol in [("rlnOriginXAngst", 1e-3), ("rlnOriginYAngst", 1e-3), ("rlnDefocusU", 0.1),
                     ("rlnDefocusV", 0.1), ("rlnCoordinateX", 1e-3), ("rlnCoordinateY", 1e-3),
                     ("rlnVoltage", 1e-6), ("rlnSphericalAberration", 1e-6), ("rlnAmplitudeContrast", 1e-6),
                     ("rlnImagePixelSize", 1e-4)]:
        np.testing.assert_allclose(got[col].to_numpy(float), ref[col].to_numpy(float), atol=tol, err_msg=col)
    # the astigmatism angle is defined modulo 180 degrees
    d = (got["rlnDefocusAngle"].to_numpy(float) - ref["rlnDefocusAngle"].to_numpy(float)) % 180.0
    assert np.all(np.minimum(d, 180.0 - d) < 1e-3)
    # the same pixels
    for k in (0, len(ref) - 1):
        i_r, p_r = split_image_name(ref["rlnImageName"].iloc[k])
        i_g, p_g = split_image_name(got["rlnImageName"].iloc[k])
        np.testing.assert_array_equal(read_stack_images(got_root / p_g, [i_g]), read_stack_images(ref_root / p_r, [i_r]))


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
def test_ground_truth_passes_through_unchanged(adapter, engine_dataset, tmp_path):
    ref = GenemDataset.open(engine_dataset).particles()
    before = _snapshot(engine_dataset)
    got, got_root = adapter.deliver(engine_dataset, tmp_path)
    assert_same_ground_truth(ref, engine_dataset, got, got_root)
    assert _snapshot(engine_dataset) == before, "the adapter wrote into the engine's dataset folder"


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
def test_bad_input_fails_with_one_line_naming_the_file(adapter, tmp_path):
    (tmp_path / "inputs").mkdir()
    args, cwd, broken = adapter.bad_input(tmp_path)
    before = _snapshot(broken.parent)
    r = _run(args, cwd)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "error" in last and broken.name in last, r.stderr[-1500:]
    assert _snapshot(broken.parent) == before, "the adapter wrote into the input folder"


# ---- picking: each adapter delivers the engine's own picks ---------------------------------------------------------
PICK_DIAMETER_A = 120.0


@pytest.fixture(scope="module")
def engine_picks(engine_dataset, tmp_path_factory):
    """The engine's own DoG picks (every candidate: threshold 0) of the engine dataset's micrographs: {stem: (xy,
    score)}."""
    from genem.pick import DogPicker, pick_micrographs, read_coordinates_star

    out = pick_micrographs(DogPicker(PICK_DIAMETER_A), engine_dataset / "micrographs.star",
                           tmp_path_factory.mktemp("engine_picks") / "picks", threshold=0.0)
    picks = {p.stem: read_coordinates_star(p) for p in sorted((out / "picks").glob("*.star"))}
    assert len(picks) == SIM["n_micrographs"] and all(len(xy) for xy, _ in picks.values())
    return picks


class RelionPicks:
    name = "relion"

    def deliver(self, engine_root: Path, work: Path, monkeypatch) -> tuple[dict, Path]:
        """genem-relion-pick on the dataset's micrographs STAR; the coordinate files Extract reads, read back."""
        from genem.io import read_star
        from genem.pick import read_coordinates_star
        from genem_relion.publish import coordinate_file_for

        proj = work / "relion_project"
        proj.mkdir()
        star = engine_root / "micrographs.star"
        r = _run(["-m", "genem_relion.pick", "--o", "External/job002/", "--in_mics", str(star), "--model", "dog",
                  "--diameter", str(PICK_DIAMETER_A), "--threshold", "0", "--j", "1"], proj)
        assert r.returncode == 0 and (proj / "External/job002/RELION_JOB_EXIT_SUCCESS").exists(), r.stderr[-2000:]
        names = read_star(star)["micrographs"]["rlnMicrographName"]
        return {Path(n).stem: read_coordinates_star(proj / coordinate_file_for(n, Path("External/job002")))
                for n in names}, engine_root

    def bad_input(self, work: Path, monkeypatch, capsys):
        """(run() -> (exit code, stderr), the broken input): a micrographs STAR in its own folder ``work/inputs``
        naming an unreadable micrograph."""
        proj = work / "relion_project_bad"
        proj.mkdir()
        broken = work / "inputs" / "broken.mrc"
        broken.write_text("not an MRC file\n")
        (work / "inputs" / "micrographs.star").write_text(
            "data_optics\nloop_\n_rlnOpticsGroup\n_rlnMicrographPixelSize\n1 3.0\n\n"
            "data_micrographs\nloop_\n_rlnMicrographName\n_rlnOpticsGroup\nbroken.mrc 1\n")

        def run():
            r = _run(["-m", "genem_relion.pick", "--o", "External/job002/", "--in_mics",
                      str(work / "inputs" / "micrographs.star"), "--model", "dog", "--diameter", "100"], proj)
            return r.returncode, r.stderr
        return run, broken


class CryosparcPicks:
    """The live external job against cryosparc-tools with its API client mocked (tests/cryosparc)."""
    name = "cryosparc"

    def _server(self, work: Path, monkeypatch):
        monkeypatch.syspath_prepend(str(ROOT / "tests" / "cryosparc"))
        from cryosparc.tools import CryoSPARC
        from test_external import FakeServer

        server = FakeServer(work)
        server.install(monkeypatch)
        server.cs = CryoSPARC(base_url="http://localhost:39000", email="test@example.com", password="password")
        return server

    def deliver(self, engine_root: Path, work: Path, monkeypatch) -> tuple[dict, Path]:
        """pick_job on the dataset's micrographs as a job's exposures; the saved particles' location, read back."""
        from genem_cryosparc import external

        server = self._server(work, monkeypatch)
        from test_external import publish_exposures

        exp = publish_exposures(server, engine_root)
        external.pick_job(server.cs, "P1", "W1", micrographs="J5.exposures", diameter_A=PICK_DIAMETER_A,
                          engine_args=["--threshold", "0"], work_dir=work / "scratch")
        out = server.saved["particles"]
        path = np.asarray(out["location/micrograph_path"])
        shape = np.asarray(out["location/micrograph_shape"], np.float64)
        picks = {}
        for p in exp["micrograph_blob/path"]:
            sel = path == p
            xy = np.stack([np.asarray(out["location/center_x_frac"])[sel] * shape[sel, 1],
                           np.asarray(out["location/center_y_frac"])[sel] * shape[sel, 0]], -1)
            picks[Path(p).stem] = (xy, np.asarray(out["pick_stats/ncc_score"], np.float64)[sel])
        return picks, server.remote / "J5"

    def bad_input(self, work: Path, monkeypatch, capsys):
        """`genem-cryosparc pick` where one exposure's micrograph is unreadable."""
        from genem_cryosparc.cli import main

        server = self._server(work, monkeypatch)
        from test_external import publish_exposures

        (work / "inputs" / "Micrographs").mkdir()
        broken = work / "inputs" / "Micrographs" / "broken.mrc"
        broken.write_text("not an MRC file\n")
        (work / "inputs" / "micrographs.star").write_text(
            "data_optics\nloop_\n_rlnOpticsGroup\n_rlnMicrographPixelSize\n1 3.0\n\n"
            "data_micrographs\nloop_\n_rlnMicrographName\n_rlnOpticsGroup\nMicrographs/broken.mrc 1\n")
        monkeypatch.setattr("genem.io.cs_convert.micrograph_shapes_px",
                            lambda root, names: {n: (64, 64) for n in names})  # the header cannot be read
        publish_exposures(server, work / "inputs")
        for k, v in (("CRYOSPARC_BASE_URL", "http://localhost:39000"), ("CRYOSPARC_EMAIL", "e@x.org"),
                     ("CRYOSPARC_PASSWORD", "pw")):
            monkeypatch.setenv(k, v)

        def run():
            rc = main(["pick", "--project", "P1", "--workspace", "W1", "--work-dir", str(work / "scratch"),
                       "--micrographs", "J5.exposures", "--diameter-A", "100"])
            return rc, capsys.readouterr().err
        return run, server.remote / "J5" / "imported" / broken.name


PICK_ADAPTERS = [RelionPicks(), CryosparcPicks()]


@pytest.mark.parametrize("adapter", PICK_ADAPTERS, ids=lambda a: a.name)
def test_picks_delivered_equal_the_engines_own(adapter, engine_dataset, engine_picks, tmp_path, monkeypatch):
    before = _snapshot(engine_dataset)
    got, input_folder = adapter.deliver(engine_dataset, tmp_path, monkeypatch)
    assert sorted(got) == sorted(engine_picks)
    for stem, (xy, score) in engine_picks.items():
        np.testing.assert_allclose(got[stem][0], xy, atol=1e-2, err_msg=stem)  # .cs holds float32 fractions
        np.testing.assert_allclose(got[stem][1], score, rtol=1e-5, err_msg=stem)
    assert _snapshot(engine_dataset) == before, "the adapter wrote into the micrographs' folder"


@pytest.mark.parametrize("adapter", PICK_ADAPTERS, ids=lambda a: a.name)
def test_bad_pick_input_fails_with_one_line_naming_the_file(adapter, tmp_path, monkeypatch, capsys):
    (tmp_path / "inputs").mkdir()
    run, broken = adapter.bad_input(tmp_path, monkeypatch, capsys)
    before = _snapshot(broken.parent)
    rc, err = run()
    assert rc != 0
    last = err.strip().splitlines()[-1]
    assert "error" in last and broken.name in last, err[-1500:]
    assert "Traceback" not in last
    assert _snapshot(broken.parent) == before, "the adapter wrote into the input folder"
