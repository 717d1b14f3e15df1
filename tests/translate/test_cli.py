"""Command lines: train / apply / evaluate realism end to end, and bad input -> one-line error, exit != 0,
nothing that looks finished."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "genem", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def _one_line_error(r, *words):
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("genem: error:"), r.stderr
    for w in words:
        assert w in lines[0], lines[0]


TRAIN = ["--steps", "2", "--tile-px", "64", "--batch-size", "2", "--nce-patches", "16", "--base-channels", "4",
         "--n-blocks", "1", "--quiet", "--checkpoint-every", "1", "--grid-every", "2"]


def test_cli_train_apply_evaluate(tiny_sim, fake_real, tmp_path):
    model = tmp_path / "model"
    r = _run("translate", "train", "--simulated", tiny_sim, "--real", str(fake_real[0].parent / "*.mrc"),
             "--out", model, *TRAIN)
    assert r.returncode == 0, r.stderr
    assert (model / "model.pt").exists() and (model / "loss_log.tsv").exists()
    assert sorted(p.name for p in (model / "checkpoints").iterdir()) == ["step_000001.pt", "step_000002.pt"]
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["real_sources"][0]["source_dtype"] == "uint16" and cfg["pixel_size_A"] == 2.0
    r = _run("translate", "train", "--simulated", tiny_sim, "--real", fake_real[0], "--out", model, *TRAIN)
    _one_line_error(r, "--resume")
    r = _run("translate", "train", "--out", model, "--resume", "--steps", "3", "--simulated", tiny_sim,
             "--real", fake_real[0], "--quiet")
    assert r.returncode == 0, r.stderr
    assert [ln.split("\t")[0] for ln in (model / "loss_log.tsv").read_text().splitlines()[1:]] == ["2", "3"]  # logged at the end of each run
    out = tmp_path / "translated"
    r = _run("translate", "apply", "--model", model, "--simulated", tiny_sim, "--out", out, "--tile-px", "256",
             "--quiet")
    assert r.returncode == 0, r.stderr
    assert (out / "manifest.json").exists()
    report = tmp_path / "realism.json"
    r = _run("evaluate", "realism", "--real", *fake_real, "--synthetic", f"gaussian={tiny_sim}",
             "--synthetic", f"translated={out}", "--out", report, "--c2st-epochs", "2", "--seeds", "2")
    assert r.returncode == 0, r.stderr
    rep = json.loads(report.read_text())
    assert set(rep["synthetic"]) == {"gaussian", "translated"}
    for v in rep["synthetic"].values():
        assert 0.0 <= v["c2st_accuracy"] <= 1.0 and v["raps_distance_log10"] >= 0 and v["histogram_distance_w1"] >= 0
        assert len(v["c2st"]["accuracy"]) == len(v["c2st_strong"]["accuracy"]) == 2 and len(v["bands"]) == 6
        assert {f["name"] for f in v["artefacts"]["findings"]} >= {"directional_streaks", "tiling_seams"}
    assert rep["seeds"] == [0, 1] and rep["strong_c2st"]["epochs"] == 6
    assert report.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_cli_bad_input(tiny_sim, fake_real, tmp_path):
    def train(sim, real, out):
        return _run("translate", "train", "--simulated", sim, "--real", real, "--out", out, *TRAIN)

    # no real micrographs found
    r = train(tiny_sim, tmp_path / "nowhere" / "*.mrc", tmp_path / "m1")
    _one_line_error(r, "no real micrographs found")
    assert not (tmp_path / "m1").exists()
    # a simulated folder without masks
    nomask = tmp_path / "nomask"
    shutil.copytree(tiny_sim, nomask)
    shutil.rmtree(nomask / "Masks")
    r = train(nomask, fake_real[0], tmp_path / "m2")
    _one_line_error(r, "mic_000001.mrc", "particle mask missing")
    assert not (tmp_path / "m2").exists()
    # a corrupt MRC among the real micrographs
    bad = tmp_path / "corrupt.mrc"
    bad.write_bytes(b"\x00\x01garbage" * 50)
    r = train(tiny_sim, bad, tmp_path / "m3")
    _one_line_error(r, "corrupt.mrc", "not a readable MRC")
    assert not (tmp_path / "m3").exists()
    # real pixel size coarser than the simulation's: cannot be matched
    r = _run("translate", "train", "--simulated", tiny_sim, "--real", fake_real[0], "--out", tmp_path / "m4",
             "--real-pixel-size-A", "4.0", *TRAIN)
    _one_line_error(r, "cannot be matched")
    assert not (tmp_path / "m4" / "model.pt").exists()
    # applying an unfinished or missing model; evaluate with no real data
    r = _run("translate", "apply", "--model", tmp_path / "m4", "--simulated", tiny_sim, "--out", tmp_path / "o")
    _one_line_error(r, "model.pt")
    assert not (tmp_path / "o" / "manifest.json").exists()
    r = _run("evaluate", "realism", "--real", tmp_path / "none*.mrc", "--synthetic", tiny_sim,
             "--out", tmp_path / "r.json")
    _one_line_error(r, "no real micrographs found")
    assert not (tmp_path / "r.json").exists()
