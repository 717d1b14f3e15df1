"""Output folders and files are checked before any work: a user's folder is never written into, a file or an
unwritable place for --out is one line, and a command resumes only its own earlier output."""
import os
from pathlib import Path

import pytest

from genem.cli.main import main
from genem.io import GenemInputError


def _cli(*args) -> int:
    return main([str(a) for a in args])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    lines = [ln for ln in err if ln.startswith("genem")]
    assert len(lines) == 1 and lines[0].startswith(("genem: error:", "genem-cryosparc: error:")), err
    assert not any("Traceback" in ln for ln in err), err
    return lines[0]


@pytest.fixture
def users_folder(tmp_path):
    """A user's project folder: a particles.star of theirs, which no command may overwrite."""
    d = tmp_path / "my project"
    d.mkdir()
    (d / "particles.star").write_text("data_\nloop_\n_rlnImageName\n1@mine.mrcs\n")
    return d


def _untouched(folder: Path):
    assert sorted(p.name for p in folder.iterdir()) == ["particles.star"]
    assert (folder / "particles.star").read_text().endswith("1@mine.mrcs\n")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from genem.simulate import SimulationConfig, run_simulation

    cfg = SimulationConfig(n_micrographs=1, micrograph_size_px=(128, 128), pixel_size_A=4.0, particle_box_px=32,
                           particles_per_micrograph=2, noise_mode="snr", snr=0.1, seed=1)
    return run_simulation(cfg, tmp_path_factory.mktemp("outputs") / "ds")


SIMULATE = ("simulate", "--n-micrographs", 1, "--micrograph-size", 128, "--pixel-size-A", 4, "--box", 32,
            "--particles", 2, "--noise-mode", "snr", "--snr", 0.1, "--no-progress")


# ------------------------------------------------------------------------------------------ the rule itself
def test_claim_accepts_new_empty_and_own_folders_only(tmp_path, monkeypatch):
    from genem.io.outputs import OUTPUT_MARK, check_out_file, claim_out_dir

    new = claim_out_dir(tmp_path / "a" / "b", "genem x")
    assert (new / OUTPUT_MARK).read_text() == "genem x\n"
    (new / "result.txt").write_text("1")
    assert claim_out_dir(new, "genem x") == new  # its own earlier run: may resume
    with pytest.raises(GenemInputError, match="output of 'genem x'"):
        claim_out_dir(new, "genem y")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "r.json.tmp-abc.json").write_text("")  # an interrupted write does not make a folder foreign
    claim_out_dir(empty, "genem x")
    legacy = tmp_path / "legacy"
    (legacy / ".parts").mkdir(parents=True)
    (legacy / ".parts" / "config.json").write_text("{}")
    (legacy / "Micrographs").mkdir()
    claim_out_dir(legacy, "genem x", markers=(".parts/config.json",))  # its records, written before the mark
    only_records = tmp_path / "records"
    (only_records / ".parts").mkdir(parents=True)
    claim_out_dir(only_records, "genem x", own_names=(".parts",))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "particles.star").write_text("x")
    with pytest.raises(GenemInputError, match="not empty"):
        claim_out_dir(foreign, "genem x", own_names=(".parts",))
    assert sorted(p.name for p in foreign.iterdir()) == ["particles.star"]
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(GenemInputError, match="not a folder"):
        claim_out_dir(tmp_path / "f.txt", "genem x")
    with pytest.raises(GenemInputError, match="is a file"):
        claim_out_dir(tmp_path / "f.txt" / "sub", "genem x")
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(GenemInputError, match="not writable"):
        claim_out_dir(tmp_path / "new2", "genem x")
    with pytest.raises(GenemInputError, match="not writable"):
        check_out_file(tmp_path / "r.json")


def test_check_out_file(tmp_path):
    from genem.io.outputs import check_out_file

    with pytest.raises(GenemInputError, match="is a folder"):
        check_out_file(tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(GenemInputError, match="is a file"):
        check_out_file(tmp_path / "f" / "r.json")
    assert check_out_file(tmp_path / "new" / "r.json") == tmp_path / "new" / "r.json"
    assert not (tmp_path / "new").exists()  # checking writes nothing


# ------------------------------------------------------------------------------------------ every writer
def test_simulate_refuses_a_users_folder_and_resumes_its_own(users_folder, tmp_path, capsys):
    assert _cli(*SIMULATE, "--out", users_folder) == 2
    line = _one_error_line(capsys)
    assert str(users_folder) in line and "not empty" in line
    _untouched(users_folder)
    (tmp_path / "file.txt").write_text("x")
    assert _cli(*SIMULATE, "--out", tmp_path / "file.txt") == 2
    assert "not a folder" in _one_error_line(capsys)
    assert _cli(*SIMULATE, "--out", tmp_path / "file.txt" / "ds") == 2
    assert "is a file" in _one_error_line(capsys)
    own = tmp_path / "own"
    assert _cli(*SIMULATE, "--out", own) == 0
    assert _cli(*SIMULATE, "--out", own) == 0  # its own (finished) dataset: accepted
    capsys.readouterr()


def test_translate_refuses_a_users_folder(users_folder, dataset, tmp_path, capsys):
    assert _cli("translate", "train", "--simulated", dataset, "--real", dataset / "Micrographs",
                "--out", users_folder, "--quiet") == 2
    assert "not empty" in _one_error_line(capsys)
    assert _cli("translate", "apply", "--model", tmp_path / "no_model", "--simulated", dataset,
                "--out", users_folder, "--quiet") == 2
    assert "not empty" in _one_error_line(capsys)
    _untouched(users_folder)
    (tmp_path / "f.txt").write_text("x")
    assert _cli("translate", "apply", "--model", tmp_path / "no_model", "--simulated", dataset,
                "--out", tmp_path / "f.txt", "--quiet") == 2
    assert _one_error_line(capsys) == f"genem: error: {tmp_path / 'f.txt'}: exists and is not a folder"


def test_denoise_refuses_a_users_folder(users_folder, dataset, capsys):
    assert _cli("denoise", "train", "--data", dataset, "--out", users_folder, "--steps", 1, "--no-progress") == 2
    assert "not empty" in _one_error_line(capsys)
    assert _cli("denoise", "apply", "--particles", dataset / "particles.star", "--out", users_folder,
                "--no-progress") == 2
    assert "not empty" in _one_error_line(capsys)
    assert _cli("denoise", "apply", "--micrographs", dataset / "micrographs.star", "--out", users_folder,
                "--no-progress") == 2
    assert "not empty" in _one_error_line(capsys)
    assert _cli("evaluate", "denoise", "--data", dataset, "--out", users_folder, "--no-topaz") == 2
    assert "not empty" in _one_error_line(capsys)
    _untouched(users_folder)
    assert _cli("denoise", "apply", "--particles", dataset / "particles.star", "--no-progress",
                "--out", dataset / "particles.star") == 2
    assert "not a folder" in _one_error_line(capsys)


def test_pick_refuses_a_users_folder(users_folder, dataset, capsys):
    assert _cli("pick", "train", "--data", dataset, "--out", users_folder, "--steps", 1, "--no-progress") == 2
    assert "not empty" in _one_error_line(capsys)
    assert _cli("pick", "apply", "--method", "dog", "--diameter-A", 60, "--micrographs", dataset / "Micrographs",
                "--out", users_folder, "--no-progress") == 2
    assert "not empty" in _one_error_line(capsys)
    _untouched(users_folder)


def test_evaluate_reports_refuse_a_folder_where_a_file_goes(dataset, tmp_path, capsys):
    report = tmp_path / "report"
    report.mkdir()
    assert _cli("evaluate", "realism", "--real", dataset / "Micrographs", "--synthetic", dataset,
                "--out", report) == 2
    assert "is a folder" in _one_error_line(capsys)
    assert list(report.iterdir()) == [] and not (tmp_path / "report.png").exists()
    assert _cli("evaluate", "realism", "--real", dataset / "Micrographs", "--synthetic", dataset,
                "--out", tmp_path / "r.json", "--plot", report) == 2
    assert "is a folder" in _one_error_line(capsys)
    assert _cli("evaluate", "picking", "--picks", tmp_path / "no_picks", "--truth", dataset, "--out", report) == 2
    assert "is a folder" in _one_error_line(capsys)
    (tmp_path / "f").write_text("x")
    assert _cli("evaluate", "realism", "--real", dataset / "Micrographs", "--synthetic", dataset,
                "--out", tmp_path / "f" / "r.json") == 2
    assert "is a file" in _one_error_line(capsys)


def test_cryosparc_export_and_import_refuse_a_users_folder(users_folder, dataset, capsys):
    pytest.importorskip("cryosparc")
    from genem_cryosparc.cli import main as cs_main

    assert cs_main(["export", str(dataset), "--out", str(users_folder)]) == 2
    assert "not empty" in _one_error_line(capsys)
    assert cs_main(["import", str(dataset / "particles.cs"), "--out", str(users_folder)]) == 2
    assert "not empty" in _one_error_line(capsys)
    _untouched(users_folder)
