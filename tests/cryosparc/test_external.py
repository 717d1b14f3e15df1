"""The online external-job flow, with cryosparc-tools' API client replaced by a MagicMock that returns pydantic
``Job``/``Project`` models (as cryosparc-tools' own tests do): the calls made and the datasets saved."""
import shutil
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import cryosparc
import numpy as np
import pytest
from cryosparc.dataset import Dataset
from cryosparc.models.job import Job
from cryosparc.models.job_spec import JobSpec, Output, OutputResult, OutputSlot, OutputSpec, Params, ResourceSpec
from cryosparc.models.project import Project
from cryosparc.tools import CryoSPARC

from genem.io import GenemInputError, read_particles_star, write_mrc, write_star
from genem.io.mrc import read_stack_images
from genem_cryosparc import external
from genem_cryosparc.convert import EXPOSURE_BLOB_FIELDS, slot_fields
from genem_cs_helpers import run_cli

NOW = datetime.now(timezone.utc)
PICK_STATS_FIELDS = [("pick_stats/ncc_score", "<f4"), ("pick_stats/power", "<f4"), ("pick_stats/template_idx", "<u4"),
                     ("pick_stats/angle_rad", "<f4")]
SIM_ARGS = ["--n-micrographs", "1", "--micrograph-size", "256", "--box", "32", "--particles", "8",
            "--pixel-size-A", "4", "--seed", "3", "--noise-mode", "none"]


def _job(uid, outputs=None):
    spec = JobSpec(type="snowflake", params=Params(), ui_tile_width=1, ui_tile_height=1, resource_spec=ResourceSpec())
    for name, typ in (outputs or {}).items():
        spec.outputs.root[name] = Output(type=typ, title=name, results=[OutputResult(name="blob", dtype="blob")])
    return Job(_id="67292e95282b26b45d0e8fee", uid=uid, uid_num=int(uid[1:]), project_uid="P1", project_uid_num=1,
               workspace_uids=["W1"], job_dir=uid, title="t", status="building", status_num=5,
               created_by_user_id="u1", spec=spec, build_errors=[], job_dir_size_last_updated=NOW)


def _expected_fields(slots):
    out = []
    for s in slots:
        if s == "micrograph_blob":
            out += [(f"micrograph_blob/{f[0]}",) + tuple(f[1:]) for f in EXPOSURE_BLOB_FIELDS]
        elif s == "pick_stats":  # as cryoSPARC's pickers write it
            out += PICK_STATS_FIELDS
        else:
            out += slot_fields(s)
    return out


class FakeServer:
    """State behind the mocked APIClient: the project directory (remote), uploads, saved outputs, events."""

    def __init__(self, tmp: Path):
        self.remote = tmp / "remote_project"   # the server's project directory, not visible to the job
        self.remote.mkdir()
        self.uploads: dict[str, Path] = {}
        self.saved: dict[str, Dataset] = {}
        self.outputs: dict[str, OutputSpec] = {}
        self.events: list[str] = []
        self.job = _job("J43")

    def install(self, monkeypatch) -> mock.MagicMock:
        api = mock.MagicMock(name="api")
        monkeypatch.setattr("cryosparc.tools.APIClient", mock.MagicMock(return_value=api))
        api.config.get_version.return_value = f"v{cryosparc.__version__}"
        api.projects.find_one.return_value = Project(uid="P1", project_dir=str(self.remote), owner_user_id="u1",
                                                     title="p", size_last_updated=NOW, uid_num=1)
        api.projects.get_directory.return_value = "/not/mounted/here/P1"
        api.jobs.create.return_value = self.job
        api.jobs.find_one.return_value = _job("J12", {"particles": "particle"})
        for ep in ("add_external_input", "connect", "mark_running", "mark_completed", "mark_failed"):
            getattr(api.jobs, ep).return_value = self.job

        def add_output(p, j, name, spec):
            self.outputs[name] = spec
            return self.job

        def fields(p, j, name, params):
            return _expected_fields([s.name for s in self.outputs[name].slots])

        def save(p, j, name, dset, version=0):
            self.saved[name] = dset
            return self.job

        def upload(p, stream, path, overwrite=False):
            target = self.remote / path
            assert overwrite or not target.exists()
            target.parent.mkdir(parents=True, exist_ok=True)
            stream.save(str(target))
            self.uploads[path] = target

        def download(p, path):
            src = self.remote / path
            return mock.MagicMock(save=lambda target: shutil.copyfile(src, target))

        def event(p, j, text, type="text"):
            self.events.append(text)
            return mock.MagicMock(id=f"ev{len(self.events)}")

        api.jobs.add_external_output.side_effect = add_output
        api.jobs.get_output_fields.side_effect = fields
        api.jobs.save_output.side_effect = save
        api.projects.upload_file.side_effect = upload
        api.projects.download_file.side_effect = download
        api.jobs.add_event_log.side_effect = event
        api.jobs.update_event_log.side_effect = lambda p, j, i, text, type="text": event(p, j, text, type)
        self.api = api
        return api


@pytest.fixture
def server(tmp_path, monkeypatch):
    s = FakeServer(tmp_path)
    s.install(monkeypatch)
    s.cs = CryoSPARC(base_url="http://localhost:39000", email="test@example.com", password="password")
    return s


def _check_dataset(dset: Dataset, slots):
    want = {"uid": "<u8"} | {f[0]: f[1] for f in _expected_fields(slots)}
    assert set(dset.fields()) == set(want)
    for f, dt in want.items():
        col = np.asarray(dset[f])
        assert (col.dtype == object) if dt == "O" else (col.dtype == np.dtype(dt)), f


def test_simulate_job_flow(server, tmp_path):
    uid = external.simulate_job(server.cs, "P1", "W1", SIM_ARGS, work_dir=tmp_path / "work")
    api = server.api
    assert uid == "J43"
    api.jobs.create.assert_called_once_with("P1", "W1", type="snowflake", title="GenEM simulate", description="")
    assert server.outputs["particles"] == OutputSpec(type="particle", title="GenEM particles", slots=[
        OutputSlot(name=s, dtype=s) for s in ("blob", "ctf", "alignments3D", "location")])
    assert server.outputs["micrographs"] == OutputSpec(type="exposure", title="GenEM micrographs", slots=[
        OutputSlot(name="micrograph_blob", dtype="micrograph_blob"), OutputSlot(name="ctf", dtype="ctf")])
    api.jobs.mark_running.assert_called_once_with("P1", "J43", status="running")
    api.jobs.mark_completed.assert_called_once_with("P1", "J43")
    api.jobs.mark_failed.assert_not_called()

    optics, parts = read_particles_star(tmp_path / "work" / "simulation" / "particles.star")
    p = server.saved["particles"]
    assert len(p) == len(parts) == 8
    _check_dataset(p, ["blob", "ctf", "alignments3D", "location"])
    assert set(p["blob/path"]) == {"J43/genem/Particles/mic_000001.mrcs"}
    assert list(p["blob/idx"]) == list(range(8))
    m = server.saved["micrographs"]
    _check_dataset(m, ["micrograph_blob", "ctf"])
    assert list(m["micrograph_blob/path"]) == ["J43/genem/Micrographs/mic_000001.mrc"]
    assert set(np.asarray(p["location/micrograph_uid"]).tolist()) == {int(m["uid"][0])}
    # every referenced file was uploaded into the job directory, from the engine's output
    for rel in set(p["blob/path"]) | set(m["micrograph_blob/path"]):
        assert rel in server.uploads and server.uploads[rel].is_file()
    assert "J43/genem/ground_truth/structure_00.mrc" in server.uploads
    assert any("saved 8 particles" in e for e in server.events)
    assert any("simulate" in e for e in server.events)  # engine progress reached the event log


def _stub_denoiser(cmd, log):
    """A stand-in for `genem denoise apply` (the engine is tested elsewhere): writes negated images into
    --out, keeps every column, drops the first particle and reverses the order."""
    a = list(cmd)
    star, out = Path(a[a.index("--particles") + 1]), Path(a[a.index("--out") + 1])
    assert a[a.index("apply") - 1] == "denoise"
    optics, parts = read_particles_star(star)
    parts = parts.iloc[1:][::-1].reset_index(drop=True)
    imgs = []
    for name in parts["rlnImageName"]:
        i, f = name.split("@")
        imgs.append(read_stack_images(star.parent / f, [int(i) - 1])[0])
    write_mrc(out / "Denoised" / "particles.mrcs", -np.stack(imgs), float(optics["rlnImagePixelSize"][0]))
    parts["rlnImageName"] = [f"{k + 1:06d}@Denoised/particles.mrcs" for k in range(len(parts))]
    write_star(out / "particles_denoised.star", {"optics": optics, "particles": parts})
    log("denoise: 100%")


@pytest.fixture
def remote_particles(server, sim_dataset):
    """The simulated particles as the output of job J12 in the (remote) cryoSPARC project."""
    shutil.copytree(sim_dataset / "Particles", server.remote / "J12" / "extract")
    d = Dataset.load(sim_dataset / "particles.cs")
    d["blob/path"] = np.array([p.replace("Particles/", "J12/extract/") for p in d["blob/path"]], dtype=object)
    d = d.filter_prefixes(["blob", "ctf"])
    server.api.jobs.load_input.return_value = d
    return d


def test_denoise_job_flow_with_passthrough(server, remote_particles, tmp_path):
    inp = remote_particles
    uid = external.denoise_job(server.cs, "P1", "W1", particles="J12.particles", model="m.pt",
                               work_dir=tmp_path / "work", runner=_stub_denoiser, check_engine=False)
    api = server.api
    assert uid == "J43"
    api.jobs.find_one.assert_called_with("P1", "J12")
    api.jobs.connect.assert_called_once_with("P1", "J43", "particles", source_job_uid="J12",
                                             source_output_name="particles")
    assert server.outputs["particles"] == OutputSpec(type="particle", title="Denoised particles",
                                                     slots=[OutputSlot(name="blob", dtype="blob")],
                                                     passthrough="particles")
    api.jobs.load_input.assert_called_once_with("P1", "J43", "particles", slots=["blob", "ctf"])
    # the project directory is not mounted here: every stack was downloaded once
    downloaded = sorted(c.kwargs.get("path", c.args[-1]) for c in api.projects.download_file.call_args_list)
    assert downloaded == sorted(set(inp["blob/path"]))
    api.jobs.mark_completed.assert_called_once_with("P1", "J43")

    out = server.saved["particles"]
    _check_dataset(out, ["blob"])   # only the new slot: cryoSPARC passes ctf, location, ... through
    want = [int(u) for u in np.asarray(inp["uid"])[1:][::-1]]
    assert [int(u) for u in out["uid"]] == want and len(out) == len(inp) - 1
    assert set(out["blob/path"]) == {"J43/genem/Denoised/particles.mrcs"}
    assert list(out["blob/idx"]) == list(range(len(inp) - 1))
    np.testing.assert_array_equal(out["blob/shape"], np.asarray(inp["blob/shape"])[:len(out)])
    np.testing.assert_array_equal(out["blob/psize_A"], np.asarray(inp["blob/psize_A"])[:len(out)])
    np.testing.assert_array_equal(out["blob/sign"], np.asarray(inp["blob/sign"])[:len(out)])
    up = server.uploads["J43/genem/Denoised/particles.mrcs"]
    first_in = read_stack_images(server.remote / inp["blob/path"][-1], [int(inp["blob/idx"][-1])])[0]
    assert np.allclose(read_stack_images(up, [0])[0], -first_in)  # the row that went in is the row that came out


def test_translate_job_flow(server, sim_dataset, tmp_path):
    """`genem translate apply` writes a dataset folder of the same layout; the job saves it like simulate does."""
    calls = []

    def stub_translate(cmd, log):  # stands in for the trained translator: copies the dataset unchanged
        a = list(cmd)
        calls.append(a[1:])
        shutil.copytree(a[a.index("--simulated") + 1], a[a.index("--out") + 1])

    external.translate_job(server.cs, "P1", "W1", model="modeldir", dataset=sim_dataset, work_dir=tmp_path / "w",
                           runner=stub_translate, check_engine=False)
    assert calls[0][:6] == ["-m", "genem", "translate", "apply", "--model", "modeldir"]
    assert set(server.outputs) == {"particles", "micrographs"}
    p, m = server.saved["particles"], server.saved["micrographs"]
    _check_dataset(p, ["blob", "ctf", "alignments3D", "location"])
    assert len(p) == len(read_particles_star(sim_dataset / "particles.star")[1]) and len(m) == 4
    server.api.jobs.mark_completed.assert_called_once_with("P1", "J43")


def test_failure_marks_job_failed_with_traceback(server, remote_particles, tmp_path):
    def broken(cmd, log):
        log("denoise: 10%")
        raise RuntimeError("engine ran out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        external.denoise_job(server.cs, "P1", "W1", particles="J12.particles", model="m.pt",
                             work_dir=tmp_path / "work", runner=broken, check_engine=False)
    api = server.api
    api.jobs.mark_running.assert_called_once_with("P1", "J43", status="running")
    api.jobs.mark_completed.assert_not_called()
    api.jobs.mark_failed.assert_called_once()
    err = api.jobs.mark_failed.call_args.kwargs["error"]
    assert "Traceback" in err and "RuntimeError: engine ran out of memory" in err
    assert server.saved == {} and server.uploads == {}


def test_cli_failing_engine_command_reaches_the_job(server, tmp_path, monkeypatch, capsys):
    """Through the command line (credentials from the environment): the real engine, given a bad option, fails;
    the job is marked failed with the engine's error, and the command exits 1 with one line."""
    from genem_cryosparc.cli import main

    monkeypatch.setenv("CRYOSPARC_BASE_URL", "http://localhost:39000")
    monkeypatch.setenv("CRYOSPARC_EMAIL", "test@example.com")
    monkeypatch.setenv("CRYOSPARC_PASSWORD", "password")
    rc = main(["simulate", "--project", "P1", "--workspace", "W1", "--work-dir", str(tmp_path / "w"), "--",
               *SIM_ARGS, "--box", "33"])
    assert rc == 1
    err_line = capsys.readouterr().err.strip()
    assert err_line.startswith("genem-cryosparc: error: engine command failed") and "\n" not in err_line
    assert "password" not in err_line
    err = server.api.jobs.mark_failed.call_args.kwargs["error"]
    assert "Traceback" in err and "genem: error" in err and server.saved == {}


def test_bad_input_spec_and_missing_credentials(monkeypatch):
    with pytest.raises(GenemInputError, match="JOB.OUTPUT"):
        external.parse_job_output("particles")
    assert external.parse_job_output("J12.particles_selected") == ("J12", "particles_selected")
    for v in ("CRYOSPARC_BASE_URL", "CRYOSPARC_MASTER_HOSTNAME"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(GenemInputError, match="CRYOSPARC_BASE_URL: not set"):
        external.connect_cryosparc()


def test_cli_online_without_server_fails_cleanly():
    r = run_cli(["-m", "genem_cryosparc", "simulate", "--project", "P1", "--workspace", "W1", "--", "--box", "32"],
                env_update={"CRYOSPARC_BASE_URL": "", "CRYOSPARC_MASTER_HOSTNAME": ""}, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("genem-cryosparc: error: CRYOSPARC_BASE_URL: not set")


@pytest.mark.skipif(not external.engine_available("denoise"),
                    reason="`genem denoise` is not in this installation yet (engine branch not merged)")
def test_denoise_job_with_the_real_engine(server, remote_particles, tmp_path):
    model = Path(__file__).resolve().parents[2] / "genem" / "restore" / "default_model"
    if not model.exists():
        pytest.skip("no default denoiser model shipped yet")
    external.denoise_job(server.cs, "P1", "W1", particles="J12.particles", model=model, work_dir=tmp_path / "w",
                         engine_args=["--steps", "2", "--no-progress"])
    assert len(server.saved["particles"]) == len(remote_particles)


# ------------------------------------------------------------------------------------------------ picking
def publish_exposures(server, dataset, job="J5"):
    """The micrographs of a GenEM dataset folder as the ``exposures`` output of ``job`` in the (remote) project:
    copied to ``<job>/imported/``; the job's exposure dataset (micrograph_blob) is what load_input returns."""
    from genem.io import read_star
    from genem.io.cs_convert import micrograph_shapes_px, micrographs_star_to_cs_dataset

    shutil.copytree(dataset / "Micrographs", server.remote / job / "imported")
    b = read_star(dataset / "micrographs.star")
    names = list(b["micrographs"]["rlnMicrographName"])
    d = micrographs_star_to_cs_dataset(b["optics"], b["micrographs"],
                                       micrograph_shape_px=micrograph_shapes_px(dataset, names))
    d["micrograph_blob/path"] = np.array([p.replace("Micrographs/", f"{job}/imported/") for p in names], dtype=object)
    d = d.filter_prefixes(["micrograph_blob"])
    server.api.jobs.find_one.return_value = _job(job, {"exposures": "exposure"})
    server.api.jobs.load_input.return_value = d
    return d


@pytest.fixture
def remote_exposures(server, sim_dataset):
    return publish_exposures(server, sim_dataset)


def test_pick_job_flow_delivers_the_engines_picks_on_the_exposures(server, remote_exposures, tmp_path):
    from genem.pick import read_coordinates_star

    exp = remote_exposures
    uid = external.pick_job(server.cs, "P1", "W1", micrographs="J5.exposures", diameter_A=120,
                            work_dir=tmp_path / "work")
    api = server.api
    assert uid == "J43"
    api.jobs.connect.assert_called_once_with("P1", "J43", "micrographs", source_job_uid="J5",
                                             source_output_name="exposures")
    assert server.outputs["particles"] == OutputSpec(type="particle", title="GenEM picks", slots=[
        OutputSlot(name="location", dtype="location"), OutputSlot(name="pick_stats", dtype="pick_stats")])
    api.jobs.load_input.assert_called_once_with("P1", "J43", "micrographs", slots=["micrograph_blob"])
    downloaded = sorted(c.kwargs.get("path", c.args[-1]) for c in api.projects.download_file.call_args_list)
    assert downloaded == sorted(exp["micrograph_blob/path"])  # not mounted here: each micrograph fetched once
    api.jobs.mark_completed.assert_called_once_with("P1", "J43")
    out = server.saved["particles"]
    _check_dataset(out, ["location", "pick_stats"])
    assert len(out) > 0 and len(np.unique(out["uid"])) == len(out)
    # each particle sits on the uid and path of its exposure, at the engine's own picks
    path_of = dict(zip(np.asarray(exp["uid"]).tolist(), exp["micrograph_blob/path"]))
    shape_of = dict(zip(exp["micrograph_blob/path"], np.asarray(exp["micrograph_blob/shape"]).tolist()))
    for u, p in zip(np.asarray(out["location/micrograph_uid"]).tolist(), out["location/micrograph_path"]):
        assert path_of[u] == p
    for path in exp["micrograph_blob/path"]:
        sel = np.asarray(out["location/micrograph_path"]) == path
        h, w = shape_of[path]
        xy, fom = read_coordinates_star(tmp_path / "work" / "picks" / "picks" / f"{Path(path).stem}.star")
        got = np.stack([np.asarray(out["location/center_x_frac"])[sel] * w,
                        np.asarray(out["location/center_y_frac"])[sel] * h], -1)
        np.testing.assert_allclose(got, xy, atol=1e-2)
        np.testing.assert_allclose(np.asarray(out["pick_stats/ncc_score"])[sel], fom, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(out["location/micrograph_shape"])[sel], [[h, w]] * int(sel.sum()))
    assert any(e.startswith("pick:") for e in server.events), server.events  # engine progress in the event log


def test_cli_pick_of_an_unreadable_micrograph_fails_naming_it(server, remote_exposures, tmp_path, monkeypatch,
                                                              capsys):
    from genem_cryosparc.cli import main

    broken = server.remote / remote_exposures["micrograph_blob/path"][1]
    broken.write_text("not a micrograph")
    for k, v in (("CRYOSPARC_BASE_URL", "http://localhost:39000"), ("CRYOSPARC_EMAIL", "test@example.com"),
                 ("CRYOSPARC_PASSWORD", "password")):
        monkeypatch.setenv(k, v)
    rc = main(["pick", "--project", "P1", "--workspace", "W1", "--work-dir", str(tmp_path / "w"), "--micrographs",
               "J5.exposures", "--diameter-A", "120"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and err.startswith("genem-cryosparc: error: ")
    assert f"{broken.name}: not a readable MRC file" in err, err
    assert server.saved == {} and server.api.jobs.mark_failed.call_count == 1
