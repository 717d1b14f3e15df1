"""benchmarks/picking_10028.py: its command line, and its estimation / arm / scoring / report plumbing on a tiny fake
CryoPPP-like dataset (the real benchmark takes most of an hour); the label measurement on the real masks."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "picking_10028.py"


def _bench():
    spec = importlib.util.spec_from_file_location("picking_10028", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_help():
    r = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for flag in ("--out", "--quick", "--seeds", "--data"):
        assert flag in r.stdout


def _fake_split(root: Path, split: str, n: int, seed: int) -> None:
    """256^2 8-bit renders with dark 20 px disks and their label masks (white disks), named like CryoPPP's."""
    rng = np.random.default_rng(seed)
    (root / split / "images").mkdir(parents=True)
    (root / split / "labels").mkdir(parents=True)
    yy, xx = np.mgrid[:256, :256]
    for k in range(n):
        centres = [(40 + 58 * i + rng.uniform(-5, 5), 40 + 58 * j + rng.uniform(-5, 5)) for i in range(4)
                   for j in range(4)]
        disk = np.zeros((256, 256), bool)
        for x, y in centres:
            disk |= (xx - x) ** 2 + (yy - y) ** 2 <= 10 ** 2
        img = 120 + rng.normal(0, 8, (256, 256)) - 25 * disk
        stem = f"{seed * 10 + k:03d}_10028"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / split / "images" / f"{stem}.png")
        Image.fromarray((disk * 255).astype(np.uint8)).save(root / split / "labels" / f"{stem}.png")


def test_plumbing_on_a_fake_dataset(tmp_path, one_torch_thread):
    b = _bench()
    data = tmp_path / "cryoppp"
    for seed, (split, n) in enumerate((("train", 2), ("valid", 1), ("test", 2))):
        _fake_split(data, split, n, seed + 1)
    geo = b.measure_labels([data / "train", data / "valid"])
    assert geo["diameter_px"] == pytest.approx(20.0, abs=1.5) and geo["counts"] == [16, 16, 16]
    assert 40 < geo["min_separation_A"] / b.REAL_PX_A < 70
    img = b.estimate_imaging([data / "train", data / "valid"], geo["diameter_px"])
    assert len(img["defocus_A_per_micrograph"]) == 3 and img["snr"][0] > 0

    out = tmp_path / "out"
    (out / "work").mkdir(parents=True)
    run = b.Runner(out, threads=1)
    models = {"dog": {0: ["--method", "dog", "--diameter-A", f"{geo['diameter_A']:.2f}"]}}
    results = b.score_test(run, models, data / "test", out, out / "work")
    assert sorted(p.name for p in (out / "dog" / "picks").iterdir()) == ["030_10028.star", "031_10028.star"]
    assert results["dog"][0]["auprc"] > 0.5
    again = b.Runner(out, threads=1)  # a re-run skips the steps made by the same commands
    assert b.score_test(again, models, data / "test", out, out / "work") == results and again.times == {}
    # the report with every arm present (here all the DoG's numbers): mean over seeds, targets, table, figure
    fake = {arm: [dict(results["dog"][0], seed=s, auprc=results["dog"][0]["auprc"] - 0.01 * s) for s in range(2)]
            for arm in ("gaussian", "translated", "real", "translated_finetuned_real")}
    report = b.write_report(out, {"skipped": {"topaz": "not installed"}}, {**results, **fake}, run, 0.0,
                            data / "test", geo)
    saved = json.loads((out / "report.json").read_text())
    assert saved["summary"]["translated"]["auprc"][0] == pytest.approx(results["dog"][0]["auprc"] - 0.005)
    assert saved["summary"]["dog"]["auprc"][1] is None and report["targets"]["finetuned_beats_real"] is False
    assert "| translated | 2 |" in (out / "report.md").read_text()
    assert (out / "picking_10028.png").stat().st_size > 0
    assert (out / "commands.sh").read_text().count("genem ") == 4


def test_label_measurement_on_the_real_masks(shared_data):
    b = _bench()
    root = shared_data / "micrographs" / "cryoppp_10028"
    geo = b.measure_labels([root / "train", root / "valid"])
    assert geo["diameter_px"] == pytest.approx(56.0, abs=1.0)  # ~300 A at 5.36 A/px
    assert geo["counts"] == [90, 75, 78, 83, 87]


@pytest.mark.slow
def test_denoised_picking_benchmark_on_a_fake_dataset(tmp_path):
    """benchmarks/picking_denoised.py end to end on the fake renders: every version written, scored and reported,
    the test picks named like the label masks; a missing data folder is one error line."""
    script = ROOT / "benchmarks" / "picking_denoised.py"
    data = tmp_path / "cryoppp"
    for seed, (split, n) in enumerate((("train", 2), ("valid", 1), ("test", 1))):
        _fake_split(data, split, n, seed + 1)
    out = tmp_path / "out"
    out.mkdir()  # a stale timing from an earlier run whose outputs are gone: this run's measurement wins
    (out / "denoise_seconds.json").write_text(json.dumps({"genem": -1.0, "topaz": -1.0}))
    r = subprocess.run([sys.executable, str(script), "--out", str(out), "--data", str(data), "--seeds", "1",
                        "--steps", "20", "--threads", "1", "--dog-factors", "1.0"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert {"raw", "genem"} <= set(report["results"]) and set(report["results"]) | set(report["skipped"]) == {
        "raw", "genem", "topaz"}
    assert report["denoise_seconds"]["genem"] > 0 and ("topaz" in report["skipped"] or report["denoise_seconds"]["topaz"] > 0)
    for name in report["results"]:
        assert [p.name for p in (out / name / "real" / "picks").iterdir()] == ["030_10028.star"]
        assert 0 <= report["results"][name]["dog"]["auprc"][0] <= 1
    assert report["results"]["raw"]["dog"]["auprc"][0] > 0.5  # dark disks in white noise: the DoG finds them
    assert (out / "picking_denoised.png").stat().st_size > 0 and "| genem |" in (out / "report.md").read_text()
    bad = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "o2"), "--data",
                          str(tmp_path / "none")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "genem: error:" in bad.stderr
