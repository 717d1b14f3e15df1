"""The RELION External-job contract (plugins/relion/genem_relion/job.py), checked without RELION.

Contract checks every adapter must pass are the ``test_contract_*`` functions; the real RELION pipeliner runs of
the three programs are in test_relion_pipeline.py."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from genem.io import GenemInputError, read_star, write_star
from genem.progress import report
from genem_relion import job as J

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
import relion_fake_program as fake  # noqa: E402  (tests/relion is on sys.path: no __init__.py here)


def program_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop(J.WORKER_ENV, None)  # the program starts as RELION starts it: a supervisor with a worker
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT / "plugins" / "relion"), str(ROOT)])
    env.update(extra)
    return env


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A RELION 3.1 project folder (the current directory) with a 3-particle STAR."""
    (tmp_path / "default_pipeline.star").write_text(
        "\n# version 30001\n\ndata_pipeline_general\n\n_rlnPipeLineJobCounter 1\n\n")
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], "rlnVoltage": [300.0],
                           "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1],
                           "rlnImagePixelSize": [2.0], "rlnImageSize": [32], "rlnImageDimensionality": [2]})
    parts = pd.DataFrame({"rlnImageName": [f"00000{i}@Import/parts.mrcs" for i in (1, 2, 3)],
                          "rlnDefocusU": [10000.0] * 3, "rlnOpticsGroup": [1] * 3})
    write_star(tmp_path / "in.star", {"optics": optics, "particles": parts})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(J.WORKER_ENV, "1")  # run_program runs the job in this process, as in its worker
    return tmp_path


def exit_files(job_dir) -> list[str]:
    return sorted(f for f in J.EXIT_FILES if (Path(job_dir) / f).exists())


def run_fake_inprocess(*args, capsys=None):
    argv = ["--o", "External/job001/", "--in_parts", "in.star", *args]
    rc = fake.run_program(fake.SPEC, fake.run, argv)
    return rc


def run_fake_subprocess(project, *args, env=None, wait=True):
    job = project / "External" / "job001"
    job.mkdir(parents=True, exist_ok=True)
    out, err = open(job / "run.out", "a"), open(job / "run.err", "a")
    argv = [sys.executable, "-m", "relion_fake_program", "--o", "External/job001/", "--in_parts", "in.star", *args]
    p = subprocess.Popen(argv, cwd=project, stdout=out, stderr=err, env=env or program_env())
    if wait:
        p.wait(timeout=60)
    return p


# ----------------------------------------------------------------------------------------------- argument parsing
def test_parse_relion_command_line_with_empty_values_and_unknown_arguments():
    # exactly what Debian's RELION 3.1.3 pipeliner passed for: fn_exe "prog relion_x --extra 1", an empty
    # param value (label gpu), a value with a space, other_args "--foo bar" (checked by hand with relion_pipeliner)
    argv = ["relion_x", "--extra", "1", "--o", "External/job004/", "--in_parts", "in.star", "--gpu",
            "--steps", "7", "--j", "3", "--foo", "bar", "--pipeline_control", "External/job004/"]
    ns, unknown = J.parse_arguments(fake.SPEC, argv)
    assert ns.out_dir == "External/job004/"
    assert ns.threads == 3
    assert ns.params.steps == 7 and ns.params.gpu == "" and ns.params.crash == "none"
    assert ns.inputs["in_parts"] == "in.star" and ns.inputs["in_mics"] is None
    assert unknown == ["relion_x", "--extra", "1", "--foo", "bar"]
    assert J.resolve_device(ns.params.gpu) == "cpu"


@pytest.mark.parametrize("argv, problem", [
    (["--o", "E/j/", "--steps", "many"], "whole number"),
    (["--o", "E/j/", "--steps", "-2"], "at least 0"),
    (["--o", "E/j/", "--crash", "sometimes"], "one of"),
    (["--o", "E/j/", "--j", "zero"], "threads"),
    (["--o", "E/j/", "--step_s", "nan"], "finite"),
])
def test_bad_parameter_values_name_the_parameter(argv, problem):
    with pytest.raises(J.GenemInputError, match=problem):
        J.parse_arguments(fake.SPEC, argv)


def test_gpu_parameter_maps_to_a_torch_device_or_fails_clearly():
    import torch

    assert J.resolve_device("") == J.resolve_device("cpu") == "cpu"
    with pytest.raises(J.GenemInputError, match="expected a GPU number"):
        J.resolve_device("fast")
    if torch.cuda.is_available():
        assert J.resolve_device("0") == J.resolve_device("cuda:0") == "cuda:0"
        with pytest.raises(J.GenemInputError, match="CUDA device"):
            J.resolve_device("99")
    else:
        with pytest.raises(J.GenemInputError, match="no CUDA device"):
            J.resolve_device("0")


# ----------------------------------------------------------------------------------------------- node formats
PIPELINE_40 = """
# version 30001

data_pipeline_general

_rlnPipeLineJobCounter                       3

# version 30001

data_pipeline_processes

loop_
_rlnPipeLineProcessName #1
_rlnPipeLineProcessAlias #2
_rlnPipeLineProcessTypeLabel #3
_rlnPipeLineProcessStatusLabel #4
Import/job001/       None relion.importmovies  Succeeded
External/job002/     None relion.external      Running
"""
PIPELINE_50 = PIPELINE_40.replace("# version 30001", "# version 50001")


@pytest.mark.parametrize("text, version", [
    ("\n# version 30001\n\ndata_pipeline_general\n\n_rlnPipeLineJobCounter 1\n\n", "3.1"),
    (PIPELINE_40, "4.0"),
    (PIPELINE_50, "5.0"),
])
def test_relion_version_read_from_default_pipeline(tmp_path, monkeypatch, text, version):
    monkeypatch.delenv("GENEM_RELION_VERSION", raising=False)
    (tmp_path / "default_pipeline.star").write_text(text)
    assert J.detect_relion_version(tmp_path) == version


def test_relion_version_of_a_real_31_pipeline(shared_data, monkeypatch):
    monkeypatch.delenv("GENEM_RELION_VERSION", raising=False)
    assert J.detect_relion_version(shared_data / "star" / "starfile_tests") == "3.1"


@pytest.mark.parametrize("version, expected", [
    ("3.1", {"p.star": "3", "m.star": "1", "c.star": "2", "map.mrc": "6", "mask.mrc": "7"}),
    ("4.0", {"p.star": "ParticlesData.star.relion", "m.star": "MicrographsData.star.relion",
             "c.star": "MicrographsCoords.star.relion", "map.mrc": "DensityMap.mrc", "mask.mrc": "Mask3D.mrc"}),
    ("5.0", {"p.star": "ParticleGroupMetadata.star.relion", "m.star": "MicrographGroupMetadata.star.relion",
             "c.star": "MicrographCoordsGroup.star.relion", "map.mrc": "DensityMap.mrc", "mask.mrc": "Mask3D.mrc"}),
])
def test_output_node_types_for_each_relion_version(tmp_path, version, expected):
    kinds = {"p.star": "particles", "m.star": "micrographs", "c.star": "coordinates", "map.mrc": "map",
             "mask.mrc": "mask"}
    text = J.format_output_nodes([(f"External/job001/{k}", v) for k, v in kinds.items()], version)
    (tmp_path / "n.star").write_text(text)
    got = dict(J.read_output_nodes(tmp_path / "n.star"))
    assert got == {f"External/job001/{k}": v for k, v in expected.items()}
    column = "_rlnPipeLineNodeType #2" if version == "3.1" else "_rlnPipeLineNodeTypeLabel #2"
    assert column in text and ("# version 50001" in text) == (version == "5.0")
    # starfile (as RELION's own reader would) sees one loop in block output_nodes
    block = read_star(tmp_path / "n.star")["output_nodes"]
    assert list(block["rlnPipeLineNodeName"]) == [f"External/job001/{k}" for k in kinds]


def test_job_writes_nodes_in_the_format_of_the_projects_relion(project, monkeypatch):
    monkeypatch.delenv("GENEM_RELION_VERSION", raising=False)
    (project / "default_pipeline.star").write_text(PIPELINE_50)
    assert run_fake_inprocess() == 0
    nodes = J.read_output_nodes(project / "External/job001" / J.NODES_FILE)
    assert nodes == [("External/job001/particles.star", "ParticleGroupMetadata.star.relion")]


# ----------------------------------------------------------------------------------------------- the job lifecycle
def test_contract_success_writes_outputs_nodes_and_exactly_one_exit_file(project, capsys):
    job = project / "External/job001"
    job.mkdir(parents=True)
    (job / J.EXIT_FAILURE).touch()  # stale from an earlier run
    assert run_fake_inprocess("--steps", "3", "--j", "1", "--pipeline_control", "External/job001/") == 0
    assert exit_files(job) == [J.EXIT_SUCCESS]
    assert J.read_output_nodes(job / J.NODES_FILE) == [("External/job001/particles.star", "3")]
    out = read_star(job / "particles.star")
    assert list(out["particles"]["rlnGenemFake"]) == [1, 1, 1]
    assert list(out["particles"]["rlnImageName"]) == [f"00000{i}@Import/parts.mrcs" for i in (1, 2, 3)]
    stdout = capsys.readouterr().out
    assert "steps: 3/3 (100%)" in stdout and "RELION 3.1 project" in stdout


def test_contract_input_error_is_one_clear_line_and_a_failure(project, capsys):
    assert run_fake_inprocess("--crash", "input") == J.RC_FAILURE
    assert exit_files("External/job001") == [J.EXIT_FAILURE]
    assert not (project / "External/job001" / J.NODES_FILE).exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "genem-relion-fake: error: in.star: particles have no rlnImageName column"


def test_contract_unexpected_exception_gives_traceback_then_error_line(project, capsys):
    assert run_fake_inprocess("--crash", "exception") == J.RC_FAILURE
    assert exit_files("External/job001") == [J.EXIT_FAILURE]
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" in err[0]
    assert err[-1] == "genem-relion-fake: error: unexpected ZeroDivisionError: division by zero in the engine"


def test_contract_bad_arguments_and_missing_inputs_fail_before_work(project, capsys):
    assert J.run_program(fake.SPEC, fake.run,
                         ["--o", "External/job001/", "--in_parts", "in.star", "--steps", "x"]) == J.RC_FAILURE
    assert exit_files("External/job001") == [J.EXIT_FAILURE]
    assert capsys.readouterr().err.strip().endswith("--steps: expected a whole number, got 'x'")
    assert J.run_program(fake.SPEC, fake.run, ["--o", "External/job002/"]) == J.RC_FAILURE
    assert exit_files("External/job002") == [J.EXIT_FAILURE]
    assert "needs --in_parts" in capsys.readouterr().err
    assert J.run_program(fake.SPEC, fake.run,
                         ["--o", "External/job003/", "--in_parts", "nope.star"]) == J.RC_FAILURE
    assert capsys.readouterr().err.strip().endswith("nope.star: input given as --in_parts not found "
                                                    "(paths are relative to the project directory)")


def test_contract_declared_node_must_exist(project, capsys):
    assert run_fake_inprocess("--crash", "forget_node") == J.RC_FAILURE
    assert exit_files("External/job001") == [J.EXIT_FAILURE]
    assert "never_written.star was declared but not written" in capsys.readouterr().err


def test_contract_abort_request_interrupts_work(project, capsys):
    def request_abort():
        time.sleep(0.8)
        (project / "External/job001" / J.ABORT_NOW).touch()

    t = threading.Thread(target=request_abort)
    t.start()
    t0 = time.monotonic()
    rc = run_fake_inprocess("--steps", "1", "--step_s", "30")  # one long sleep: only a signal can cut it short
    t.join()
    assert rc == J.RC_ABORTED and time.monotonic() - t0 < 10
    assert exit_files("External/job001") == [J.EXIT_ABORTED]
    assert not (project / "External/job001" / J.NODES_FILE).exists()
    assert "aborted on request" in capsys.readouterr().out


def test_contract_abort_requested_before_start(project):
    (project / "External/job001").mkdir(parents=True)
    (project / "External/job001" / J.ABORT_NOW).touch()
    assert run_fake_inprocess() == J.RC_ABORTED
    assert exit_files("External/job001") == [J.EXIT_ABORTED]


def test_contract_supervisor_writes_failure_when_worker_crashes(project):
    p = run_fake_subprocess(project, "--crash", "segfault")
    assert p.returncode == J.RC_FAILURE
    job = project / "External/job001"
    assert exit_files(job) == [J.EXIT_FAILURE]
    err = (job / "run.err").read_text().strip().splitlines()
    assert "Fatal Python error: Segmentation fault" in "\n".join(err)  # faulthandler's traceback
    assert err[-1].startswith("genem-relion-fake: error: the worker process was killed by signal 11")


def test_contract_supervisor_kills_a_worker_that_ignores_abort(project):
    p = run_fake_subprocess(project, "--crash", "hang", env=program_env(GENEM_RELION_ABORT_GRACE_S="3"), wait=False)
    time.sleep(1.5)
    (project / "External/job001" / J.ABORT_NOW).touch()
    assert p.wait(timeout=30) == J.RC_ABORTED
    assert exit_files(project / "External/job001") == [J.EXIT_ABORTED]


def test_contract_help_and_missing_output_folder(project):
    r = subprocess.run([sys.executable, "-m", "relion_fake_program", "--help"], cwd=project, env=program_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--in_parts" in r.stdout and "crash" in r.stdout
    r = subprocess.run([sys.executable, "-m", "relion_fake_program", "--in_parts", "in.star"], cwd=project,
                       env=program_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--o <job folder> is required" in r.stderr


def test_engine_progress_reaches_run_out_and_engine_errors_end_run_err(project, capsys):
    spec = fake.SPEC

    def engine(progress):  # an engine function: reports progress through its callback, then fails on its input
        for i in range(4):
            time.sleep(0.01)
            report(progress, "denoising", i + 1, 4, "ptcl")
        raise GenemInputError("x.star", "no particles")

    def body(job):
        engine(job.progress())

    assert J.run_program(spec, body, ["--o", "External/job001/", "--in_parts", "in.star"]) == 1
    captured = capsys.readouterr()
    assert "denoising: 4/4 (100%)" in captured.out
    assert captured.err.strip().splitlines()[-1] == "genem-relion-fake: error: x.star: no particles"
