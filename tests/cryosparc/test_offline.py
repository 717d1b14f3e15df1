"""Offline exchange: export (.cs + .csg for Import Result Group) and import (.cs -> particles.star)."""
import os
import shutil

import numpy as np
import pytest
from cryosparc.dataset import Dataset

from genem.io import GenemInputError, read_particles_star, write_star
from genem_cryosparc.convert import UID_COLUMN, stable_uid
from genem_cryosparc.offline import export_dataset, import_particles

from genem_cs_helpers import run_cli


def test_simulator_writes_particles_cs_matching_its_star(sim_dataset):
    optics, parts = read_particles_star(sim_dataset / "particles.star")
    d = Dataset.load(sim_dataset / "particles.cs")
    assert len(d) == len(parts) > 100
    assert set(d.prefixes()) == {"blob", "ctf", "alignments3D", "location"}
    assert list(d["blob/path"][:1]) == [parts["rlnImageName"][0].split("@")[1]]
    assert d["location/micrograph_shape"].tolist()[0] == [512, 512]


def test_export_writes_import_result_group(sim_dataset, tmp_path):
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse the .csg the way cryoSPARC does")
    out = tmp_path / "export"
    res = export_dataset(sim_dataset, out)
    optics, parts = read_particles_star(sim_dataset / "particles.star")
    csg = yaml.safe_load(res["particles"].read_text())
    assert csg["group"]["type"] == "particle" and csg["group"]["name"] == "particles"
    assert set(csg["results"]) == {"blob", "ctf", "alignments3D", "location"}
    for slot, r in csg["results"].items():
        assert r["type"] == f"particle.{slot}" and r["num_items"] == len(parts)
        assert r["metafile"] == ">genem_particles.cs"
    d = Dataset.load(out / "genem_particles.cs")
    assert len(d) == len(parts)
    assert all(str(p).startswith(">Particles/") for p in d["blob/path"])
    for p in set(d["blob/path"]) | set(d["location/micrograph_path"]):  # every referenced file is in the export
        assert (out / p[1:]).is_file(), p
    # micrographs: their own group, uids that the particles' location slot points to
    mcsg = yaml.safe_load(res["micrographs"].read_text())
    assert mcsg["group"]["type"] == "exposure" and set(mcsg["results"]) == {"micrograph_blob", "ctf"}
    m = Dataset.load(out / "genem_micrographs.cs")
    assert set(np.asarray(d["location/micrograph_uid"]).tolist()) <= set(np.asarray(m["uid"]).tolist())
    assert int(m["uid"][0]) == stable_uid("Micrographs/mic_000001.mrc")
    assert m["micrograph_blob/shape"].tolist()[0] == [512, 512]
    mics = read_particles_star(sim_dataset / "micrographs.star")[1]
    np.testing.assert_allclose(m["ctf/df_angle_rad"], np.deg2rad(mics["rlnDefocusAngle"]), rtol=1e-6)
    # nothing was written into the input folder, and exporting into it is refused
    with pytest.raises(GenemInputError, match="inside the input folder"):
        export_dataset(sim_dataset, sim_dataset / "export")
    # a second run resumes (files kept) and gives the same dataset
    export_dataset(sim_dataset, out)
    assert np.array_equal(Dataset.load(out / "genem_particles.cs")["uid"], d["uid"])


def test_import_then_export_with_passthrough_restores_the_original(sim_dataset, tmp_path):
    """A cryoSPARC job folder -> import -> (engine writes new images) -> export --passthrough: all slots kept."""
    project = tmp_path / "project"
    job = project / "J7"
    shutil.copytree(sim_dataset / "Particles", job / "extract")
    optics, parts = read_particles_star(sim_dataset / "particles.star")
    src = Dataset.load(sim_dataset / "particles.cs")
    src["blob/path"] = np.array([p.replace("Particles/", "J7/extract/") for p in src["blob/path"]], dtype=object)
    src.add_fields([("pick_stats/ncc_score", "f4")])
    src["pick_stats/ncc_score"] = np.linspace(0, 1, len(src)).astype(np.float32)
    src.save(job / "particles.cs")

    star = import_particles(job / "particles.cs", tmp_path / "imported")
    o2, p2 = read_particles_star(star)
    assert p2["rlnImageName"][0] == "000001@../project/J7/extract/mic_000001.mrcs"
    assert (tmp_path / "imported" / "input.cs").is_file()
    np.testing.assert_allclose(p2["rlnDefocusU"], parts["rlnDefocusU"], rtol=1e-6)

    # the "engine": new images in a new folder, rows in a new order, one particle dropped
    eng = tmp_path / "engine"
    (eng / "Denoised").mkdir(parents=True)
    shutil.copy(sim_dataset / "Particles" / "mic_000001.mrcs", eng / "Denoised" / "a.mrcs")
    keep = p2.iloc[[3, 1, 2]].copy()
    keep["rlnImageName"] = ["000001@Denoised/a.mrcs", "000002@Denoised/a.mrcs", "000003@Denoised/a.mrcs"]
    write_star(eng / "particles.star", {"optics": o2, "particles": keep})

    export_dataset(eng, tmp_path / "out", passthrough_cs=tmp_path / "imported" / "input.cs")
    d = Dataset.load(tmp_path / "out" / "genem_particles.cs")
    want = [int(src["uid"][i]) for i in (3, 1, 2)]
    assert [int(u) for u in d["uid"]] == want
    assert list(d["blob/path"]) == [">Denoised/a.mrcs"] * 3 and list(d["blob/idx"]) == [0, 1, 2]
    np.testing.assert_allclose(d["pick_stats/ncc_score"], src["pick_stats/ncc_score"][[3, 1, 2]])
    np.testing.assert_array_equal(d["location/center_x_frac"], src["location/center_x_frac"][[3, 1, 2]])
    np.testing.assert_allclose(d["ctf/df1_A"], src["ctf/df1_A"][[3, 1, 2]], rtol=1e-6)
    assert (tmp_path / "out" / "Denoised" / "a.mrcs").is_file()


def test_import_errors_name_the_file(tmp_path, shared_data):
    real = shared_data / "cs" / "cryodrgn" / "cryosparc_P12_J24_001_particles.cs"
    with pytest.raises(GenemInputError, match="not found next to the .cs"):
        import_particles(real, tmp_path / "x")
    bad = tmp_path / "bad.cs"
    bad.write_bytes(b"not a dataset")
    with pytest.raises(GenemInputError, match="bad.cs: not a readable cryoSPARC .cs file"):
        import_particles(bad, tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_export_import_and_error_exit(sim_dataset, tmp_path):
    r = run_cli(["-m", "genem_cryosparc", "export", str(sim_dataset), "--out", str(tmp_path / "e"), "--link", "copy",
                 "--no-micrographs"], timeout=120)
    assert r.returncode == 0, r.stderr
    assert "genem_particles.csg" in r.stdout and not (tmp_path / "e" / "genem_micrographs.csg").exists()
    assert not os.path.islink(tmp_path / "e" / "Particles" / "mic_000001.mrcs")
    r = run_cli(["-m", "genem_cryosparc", "import", str(tmp_path / "e" / "genem_particles.cs"),
                 "--out", str(tmp_path / "i")], timeout=120)
    assert r.returncode == 0, r.stderr
    o, p = read_particles_star(tmp_path / "i" / "particles.star")
    assert p["rlnImageName"][0] == "000001@../e/Particles/mic_000001.mrcs" and UID_COLUMN in p.columns
    r = run_cli(["-m", "genem_cryosparc", "import", str(tmp_path / "missing.cs"), "--out", str(tmp_path / "j")])
    assert r.returncode == 2 and r.stderr.strip() == f"genem-cryosparc: error: {tmp_path / 'missing.cs'}: file not found"
