"""Fine-tuning on the user's specimen in one command: training pairs simulated as the user's particles were imaged."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genem.io import GenemInputError, read_star, write_star
from genem.restore.specimen import imaging_conditions, read_particle_ctf_table, specimen_simulation_config

ROOT = Path(__file__).resolve().parents[2]
PDB = ROOT / "genem" / "data" / "default_structure.pdb"


def _rows(n=200, kv=300.0, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.uniform(9000, 21000, n)
    a = rng.uniform(0, 300, n)
    return pd.DataFrame({"rlnVoltage": kv, "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.07,
                         "rlnDefocusU": d + a / 2, "rlnDefocusV": d - a / 2})


def test_imaging_conditions_follow_the_particles():
    c = imaging_conditions(_rows())
    assert c["voltage_kV"] == 300 and c["cs_mm"] == 2.7 and c["amplitude_contrast"] == 0.07
    lo, hi = c["defocus_A"]
    assert 9000 < lo < 9600 and 20400 < hi < 21000  # central 96 % of U(9000, 21000)
    assert c["astigmatism_A"][0] == 0 and 280 < c["astigmatism_A"][1] <= 300
    cfg = specimen_simulation_config(PDB, c, pixel_size_A=3.54, box_px=64, n_particles=3600)
    assert cfg.n_micrographs == 30 and cfg.micrograph_size_px == (2048, 2048) and cfg.particles_per_micrograph == 120
    assert cfg.voltage_kV == 300 and cfg.defocus_A == (lo, hi) and cfg.noise_mode == "poisson"
    mixed = pd.concat([_rows(10), _rows(10, kv=200.0)])
    with pytest.raises(GenemInputError, match="several voltages"):
        imaging_conditions(mixed, source="p.star")
    with pytest.raises(GenemInputError, match="non-numeric rlnDefocusV"):
        imaging_conditions(_rows().assign(rlnDefocusV="n/a"), source="p.star")
    near_focus = _rows().assign(rlnDefocusU=100.0, rlnDefocusV=-100.0)
    with pytest.raises(GenemInputError, match="too close to focus"):
        imaging_conditions(near_focus)


def test_ctf_table_from_star_and_cs(pair_dataset, tmp_path):
    rows = read_particle_ctf_table(pair_dataset / "particles.star")  # optics-group columns merged onto rows
    assert len(rows) == 30 and (rows["rlnVoltage"] == 300).all()
    blocks = read_star(pair_dataset / "particles.star")
    write_star(tmp_path / "noctf.star", {"optics": blocks["optics"],
                                          "particles": blocks["particles"].drop(columns=["rlnDefocusU"])})
    with pytest.raises(GenemInputError, match=r"noctf\.star.*rlnDefocusU"):
        read_particle_ctf_table(tmp_path / "noctf.star")
    from cryosparc.dataset import Dataset

    ds = Dataset.allocate(3, [("ctf/accel_kv", "f4"), ("ctf/cs_mm", "f4"), ("ctf/amp_contrast", "f4"),
                              ("ctf/df1_A", "f4"), ("ctf/df2_A", "f4")])
    ds["ctf/accel_kv"], ds["ctf/cs_mm"], ds["ctf/amp_contrast"] = 200, 1.4, 0.1
    ds["ctf/df1_A"], ds["ctf/df2_A"] = [10000, 12000, 14000], [9800, 11900, 14000]
    ds.save(str(tmp_path / "p.cs"))
    t = read_particle_ctf_table(tmp_path / "p.cs")
    assert list(t["rlnDefocusV"]) == [9800, 11900, 14000]
    assert t["rlnSphericalAberration"].tolist() == pytest.approx([1.4] * 3)
    ds.drop_fields(["ctf/df2_A"]).save(str(tmp_path / "q.cs"))
    with pytest.raises(GenemInputError, match="ctf/df2_A"):
        read_particle_ctf_table(tmp_path / "q.cs")


def _train(args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "genem", "denoise", "train", *map(str, args), "--steps", "2",
                           "--post-steps", "2", "--post-train-images", "8", "--crop", "16", "--no-progress",
                           "--threads", "1"], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_train_on_a_structure_like_the_particles(pair_dataset, tiny_model_dir, tmp_path, digest):
    like = pair_dataset / "particles.star"
    before = digest(pair_dataset)
    out = tmp_path / "ft"
    r = _train(["--init", tiny_model_dir, "--structure", PDB, "--like", like, "--simulate-particles", "24",
                "--keep-specimen-data", "--out", out])
    assert r.returncode == 0, r.stderr
    rec = json.loads((out / "specimen_simulation.json").read_text())
    dfs = (read_particle_ctf_table(like)["rlnDefocusU"]).to_numpy()
    lo, hi = rec["imaging_conditions"]["defocus_A"]
    assert dfs.min() <= lo < hi <= dfs.max() and rec["imaging_conditions"]["voltage_kV"] == 300
    sim = read_star(out / "specimen_data" / "particles.star")
    parts, optics = sim["particles"], sim["optics"]
    assert len(parts) == 24 and optics["rlnImagePixelSize"][0] == pytest.approx(4.0)  # the model's geometry
    assert optics["rlnImageSize"][0] == 32 and optics["rlnVoltage"][0] == 300
    info = json.loads((out / "model.json").read_text())
    assert info["meta"]["started_from"]["model"] == str(tiny_model_dir / "model.pt")
    assert digest(pair_dataset) == before  # the --like particles are only read
    # default: the simulated data go once the model is written (its configuration stays, seeded)
    r = _train(["--init", tiny_model_dir, "--structure", PDB, "--like", like, "--simulate-particles", "24",
                "--out", tmp_path / "ft2"])
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ft2" / "model.pt").exists() and not (tmp_path / "ft2" / "specimen_data").exists()
    assert (tmp_path / "ft2" / "specimen_simulation.json").read_text() == (out / "specimen_simulation.json").read_text()
    # bad input: one line, non-zero exit, nothing written
    for args, msg in ((["--structure", PDB, "--like", like], "go together"),
                      (["--init", tiny_model_dir, "--structure", tmp_path / "none.mrc", "--like", like], "none.mrc"),
                      (["--init", tiny_model_dir, "--structure", PDB, "--like", tmp_path / "x.txt"], "x.txt")):
        r = _train([*args, "--out", tmp_path / "bad"])
        assert r.returncode != 0 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "bad").exists()
    # an unfinished run's folder is refused before anything is simulated into it
    (tmp_path / "unfinished" / "checkpoints").mkdir(parents=True)
    (tmp_path / "unfinished" / "checkpoints" / "diffusion.pt").write_bytes(b"")
    r = _train(["--init", tiny_model_dir, "--structure", PDB, "--like", like, "--simulate-particles", "24",
                "--out", tmp_path / "unfinished"])
    assert r.returncode != 0 and "--resume" in r.stderr and not (tmp_path / "unfinished" / "specimen_data").exists()
