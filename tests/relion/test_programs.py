"""The three programs without RELION: the contract checks every adapter must pass (parametrised over the
programs), the mapping of RELION parameters onto the engine, and the RELION 4.0 / 5.0 output formats."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genem.io import read_star, write_mrc, write_star
from genem_relion import denoise, job as J, pick, simulate, translate
from genem_relion.publish import coordinate_file_for

PROGRAMS = {"simulate": simulate, "translate": translate, "denoise": denoise, "pick": pick}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "default_pipeline.star").write_text(
        "\n# version 30001\n\ndata_pipeline_general\n\n_rlnPipeLineJobCounter 1\n\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GENEM_RELION_VERSION", raising=False)
    monkeypatch.setenv(J.WORKER_ENV, "1")  # run_program runs the job in this process, as in its worker
    return tmp_path


def exit_files(folder) -> list[str]:
    return sorted(f for f in J.EXIT_FILES if (Path(folder) / f).exists())


# ------------------------------------------------------------------------------------------- shared contract
@pytest.mark.parametrize("name", PROGRAMS)
def test_contract_program_declares_a_valid_spec(name):
    mod = PROGRAMS[name]
    spec = mod.SPEC
    assert spec.name == f"genem-relion-{name}" and spec.module == f"genem_relion.{name}"
    labels = [p.label for p in spec.all_params]
    assert "gpu" in labels and len(labels) == len(set(labels))
    text = spec.help_text()
    for p in spec.all_params:
        assert p.label in text and p.help
    for k in spec.inputs:
        assert f"--{k}" in text


@pytest.mark.parametrize("name", [n for n in PROGRAMS if PROGRAMS[n].SPEC.required_inputs])
def test_contract_missing_input_is_a_clean_failure(project, capsys, name):
    mod = PROGRAMS[name]
    argv = ["--o", "External/job009/", "--j", "1", "--pipeline_control", "External/job009/"]
    if name in ("translate", "pick"):  # their required input is --in_mics
        rc = J.run_program(mod.SPEC, mod.run, argv)
        assert "needs --in_mics" in capsys.readouterr().err
    else:
        rc = J.run_program(mod.SPEC, mod.run, argv)
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(f"genem-relion-{name}: error: ") and ("--in_" in err or "model" in err), err
    assert rc == J.RC_FAILURE
    assert exit_files("External/job009") == [J.EXIT_FAILURE]
    assert sorted(p.name for p in (project / "External/job009").iterdir()) == [J.EXIT_FAILURE]


@pytest.mark.parametrize("name", PROGRAMS)
def test_contract_bad_parameter_value_is_a_clean_failure(project, capsys, name):
    mod = PROGRAMS[name]
    p = next(p for p in mod.SPEC.params if p.kind in ("int", "float"))
    rc = J.run_program(mod.SPEC, mod.run,
                       ["--o", "External/job003/", f"--{p.label}", "lots", "--unknown", "1"])
    assert rc == J.RC_FAILURE and exit_files("External/job003") == [J.EXIT_FAILURE]
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"--{p.label}: expected a "
                                                                     f"{'whole number' if p.kind == 'int' else 'number'}"
                                                                     ", got 'lots'")


@pytest.mark.parametrize("name", PROGRAMS)
def test_contract_console_script_declared(name):
    text = (ROOT / "pyproject.toml").read_text()
    assert f'genem-relion-{name} = "genem_relion.{name}:main"' in text


# ------------------------------------------------------------------------------------------- simulate mapping
def _job(spec, argv, version="3.1"):
    parsed, _ = J.parse_arguments(spec, argv)
    job = J.RelionJob(spec, parsed.out_dir)
    job.params, job.inputs, job.relion_version = parsed.params, {k: (Path(v) if v else None) for k, v in
                                                                 parsed.inputs.items()}, version
    return job


def test_simulate_maps_parameters_onto_the_engine_config(project):
    write_mrc(project / "ref.mrc", np.zeros((32, 32, 32), np.float32), 2.5)
    (project / "sim.json").write_text(json.dumps({"ice": "none", "n_micrographs": 9, "particles_per_micrograph": 7}))
    job = _job(simulate.SPEC, ["--o", "External/job001/", "--in_3dref", "ref.mrc", "--config", "sim.json",
                               "--n_micrographs", "2", "--micrograph_size", "256", "--box", "48", "--defocus",
                               "9000,12000", "--noise_mode", "snr", "--snr", "0.05", "--seed", "4"])
    cfg = simulate.build_config(job)
    assert cfg.n_micrographs == 2 and cfg.particles_per_micrograph == 7 and cfg.ice == "none"  # param > file
    assert cfg.micrograph_size_px == (256, 256) and cfg.particle_box_px == 48
    assert cfg.defocus_A == (9000.0, 12000.0) and cfg.noise_mode == "snr" and cfg.snr == 0.05 and cfg.seed == 4
    assert cfg.pixel_size_A == 2.5  # the input map's pixel size when none is given
    assert cfg.structures[0].path == str((project / "ref.mrc").resolve())


def test_simulate_without_a_structure_images_the_default_and_says_so(project, capsys):
    """As `genem simulate` does: no --in_3dref and no model -> the built-in default structure, named in run.out."""
    from genem.simulate.config import DEFAULT_STRUCTURE

    cfg = simulate.build_config(_job(simulate.SPEC, ["--o", "External/job001/"]))
    assert [s.path for s in cfg.structures] == [str(DEFAULT_STRUCTURE)]
    rc = J.run_program(simulate.SPEC, simulate.run, [
        "--o", "External/job001/", "--n_micrographs", "1", "--micrograph_size", "160", "--pixel_size", "4",
        "--box", "32", "--particles", "3", "--noise_mode", "snr", "--snr", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and exit_files("External/job001") == [J.EXIT_SUCCESS]
    assert f"built-in default structure {DEFAULT_STRUCTURE.name}" in out, out
    assert (project / "External/job001/particles.star").is_file()


@pytest.mark.parametrize("argv, problem", [
    (["--in_3dref", "ref.mrc", "--model", "m.pdb"], "not both"),
])
def test_simulate_takes_at_most_one_structure(project, argv, problem):
    write_mrc(project / "ref.mrc", np.zeros((32, 32, 32), np.float32), 2.5)
    (project / "m.pdb").write_text("")
    job = _job(simulate.SPEC, ["--o", "External/job001/", *argv])
    with pytest.raises(J.GenemInputError, match=problem):
        simulate.build_config(job)


def test_coordinate_file_location_follows_relions_rule():
    assert coordinate_file_for("External/job001/dataset/Micrographs/mic_000001.mrc", Path("External/job001")) == \
        "External/job001/dataset/Micrographs/mic_000001_genem.star"
    assert coordinate_file_for("MotionCorr/job002/Movies/a.mrc", Path("External/job005")) == \
        "External/job005/Movies/a_genem.star"


@pytest.mark.parametrize("version", ["4.0", "5.0"])
def test_simulate_writes_relion_4_and_5_nodes_and_coordinate_tables(project, monkeypatch, version):
    """RELION 4.0 and 5.0 cannot be installed here: check the files they read against their documented form."""
    monkeypatch.setenv("GENEM_RELION_VERSION", version)
    model = ROOT / "genem" / "data" / "default_structure.pdb"
    rc = J.run_program(simulate.SPEC, simulate.run, [
        "--o", "External/job001/", "--model", str(model), "--n_micrographs", "1", "--micrograph_size", "160",
        "--pixel_size", "4", "--box", "32", "--particles", "3", "--noise_mode", "snr", "--snr", "1"])
    assert rc == 0 and exit_files("External/job001") == [J.EXIT_SUCCESS]
    nodes = dict(J.read_output_nodes(project / "External/job001" / J.NODES_FILE))
    labels = J.NODE_KINDS
    col = 1 if version == "4.0" else 2
    assert nodes == {
        "External/job001/micrographs.star": labels["micrographs"][col],
        "External/job001/particles.star": labels["particles"][col],
        "External/job001/coordinates.star": labels["coordinates"][col],
        "External/job001/dataset/ground_truth/structure_00.mrc": "DensityMap.mrc"}
    text = (project / "External/job001" / J.NODES_FILE).read_text()
    assert ("# version 50001" in text) == (version == "5.0") and "_rlnPipeLineNodeTypeLabel #2" in text
    table = read_star(project / "External/job001/coordinates.star")["coordinate_files"]
    assert list(table["rlnMicrographName"]) == ["External/job001/dataset/Micrographs/mic_000001.mrc"]
    coords = read_star(project / table["rlnMicrographCoordinates"].iloc[0])
    parts = read_star(project / "External/job001/particles.star")["particles"]
    c = next(iter(coords.values()))
    np.testing.assert_allclose(c["rlnCoordinateX"], parts["rlnCoordinateX"])
    assert not (project / "External/job001/coords_suffix_genem.star").exists()
    # every image the particles STAR names exists relative to the project directory
    for n in parts["rlnImageName"]:
        assert (project / n.split("@")[1]).is_file()


# ------------------------------------------------------------------------------------------- translate mapping
def test_translate_rejects_a_folder_that_is_not_a_simulation(project):
    (project / "Real").mkdir()
    write_star(project / "Real/mics.star", {"micrographs": pd.DataFrame({"rlnMicrographName": ["Real/a.mrc"]})})
    job = _job(translate.SPEC, ["--o", "External/job002/", "--in_mics", "Real/mics.star", "--simulated", "Real"])
    with pytest.raises(J.GenemInputError, match="not a finished genem-relion-simulate job folder"):
        translate.simulated_dataset(job)
    with pytest.raises(J.GenemInputError, match="Real/a.mrc: micrograph listed in Real/mics.star not found"):
        translate.real_micrographs(job)
    job = _job(translate.SPEC, ["--o", "External/job002/", "--in_mics", "Real/mics.star"])
    with pytest.raises(J.GenemInputError, match="exactly one of simulated"):
        translate.simulated_dataset(job)


@pytest.mark.parametrize("name", PROGRAMS)
def test_docs_list_every_parameter_label(name):
    """docs/relion.md documents each program's parameter labels in its own section."""
    text = (ROOT / "docs" / "relion.md").read_text()
    start = text.index(f"### genem-relion-{name}")
    end = text.find("\n### ", start + 1)
    section = text[start:end if end > 0 else None]
    for p in PROGRAMS[name].SPEC.all_params:
        assert f"| `{p.label}` |" in section, p.label
    for k in PROGRAMS[name].SPEC.inputs:
        assert f"--{k}" in section


# ------------------------------------------------------------------------------------------- pick mapping
def _micrographs(project, n=2, size=192, pixel_A=4.0, seed=0):
    """``Import/job001/micrographs.star``: ``n`` micrographs with dark disks of 20 px on noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    names = []
    for k in range(n):
        img = rng.normal(size=(size, size)).astype(np.float32)
        for cx, cy in rng.uniform(30, size - 30, size=(6, 2)):
            img -= 3.0 * (((xx - cx) ** 2 + (yy - cy) ** 2) < 100)
        names.append(f"Import/job001/Micrographs/m{k}.mrc")
        write_mrc(project / names[-1], img, pixel_A)
    optics = pd.DataFrame({"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
                           "rlnMicrographPixelSize": [pixel_A]})
    write_star(project / "Import/job001/micrographs.star", {"optics": optics, "micrographs": pd.DataFrame(
        {"rlnMicrographName": names, "rlnOpticsGroup": [1] * n})})
    return "Import/job001/micrographs.star", names


@pytest.mark.parametrize("version", ["3.1", "4.0", "5.0"])
def test_pick_writes_the_coordinates_node_of_each_relion_version(project, monkeypatch, capsys, version):
    """3.1 runs under the real pipeliner (test_relion_pipeline.py); 4.0 / 5.0 are checked against the form
    RELION's source gives (autopick.star, coordinate_files, LABEL_AUTOPICK_COORDS)."""
    from genem.pick import read_coordinates_star

    monkeypatch.setenv("GENEM_RELION_VERSION", version)
    star, names = _micrographs(project)
    rc = J.run_program(pick.SPEC, pick.run, ["--o", "External/job002/", "--in_mics", star, "--model", "dog",
                                             "--diameter", "80"])
    assert rc == 0 and exit_files("External/job002") == [J.EXIT_SUCCESS], capsys.readouterr().err
    assert "picked micrographs: 2/2 (100%)" in capsys.readouterr().out
    nodes = dict(J.read_output_nodes(project / "External/job002" / J.NODES_FILE))
    col = J.RELION_VERSIONS.index(version)
    if version == "3.1":
        assert nodes == {"External/job002/coords_suffix_genem.star": "2"}
        assert (project / "External/job002/coords_suffix_genem.star").read_text().strip() == star
        files = [coordinate_file_for(n, Path("External/job002")) for n in names]
    else:
        assert nodes == {"External/job002/autopick.star": J.NODE_KINDS["picks"][col]}
        assert J.NODE_KINDS["picks"][col].endswith(".star.relion.autopick")
        table = read_star(project / "External/job002/autopick.star")["coordinate_files"]
        assert list(table["rlnMicrographName"]) == names
        files = list(table["rlnMicrographCoordinates"])
    assert files == [f"External/job002/Micrographs/m{k}_genem.star" for k in range(2)]
    for name, f in zip(names, files):  # the files RELION reads hold the engine's own picks
        got, got_fom = read_coordinates_star(project / f)
        engine = project / "External/job002/genem_picks/picks" / f"{Path(name).stem}.star"
        want, want_fom = read_coordinates_star(engine)
        assert len(got) > 0
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_fom, want_fom)


@pytest.mark.parametrize("case", ["unreadable", "missing", "no_model"])
def test_pick_bad_input_is_one_error_line_naming_the_file(project, capsys, case):
    star, names = _micrographs(project, n=1)
    argv = ["--o", "External/job003/", "--in_mics", star, "--model", "dog", "--diameter", "80"]
    if case == "unreadable":
        (project / names[0]).write_text("not an image")
        where = names[0]
    elif case == "missing":
        (project / names[0]).unlink()
        where = star
    else:
        argv = argv[:4] + ["--model", "Pickers/none"]
        where = "Pickers/none"
    rc = J.run_program(pick.SPEC, pick.run, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == J.RC_FAILURE and exit_files("External/job003") == [J.EXIT_FAILURE]
    assert err[-1].startswith(f"genem-relion-pick: error: {where}: "), err
    assert "Traceback" not in "\n".join(err)
    assert sorted(p.name for p in (project / "External/job003").iterdir()) == [J.EXIT_FAILURE]
