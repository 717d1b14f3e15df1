"""Realism metrics: identical distributions score ~0 / 0.5, different ones clearly worse."""
import numpy as np
import scipy.ndimage as ndi

from genem.metrics.realism import (c2st_accuracy, compute_raps_2d, evaluate_realism, histogram_distance,
                                   plot_raps, raps_distance)


def _sets():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(160, 32, 32)).astype(np.float32)
    b = rng.normal(size=(160, 32, 32)).astype(np.float32)
    c = ndi.gaussian_filter(rng.normal(size=(160, 32, 32)), (0, 1.5, 1.5)).astype(np.float32)
    c /= c.std()
    return a, b, c


def test_raps_of_white_noise_is_flat_and_parseval():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 64, 64))
    f, p = compute_raps_2d(x, window=False)
    assert f.shape == (32,) and abs(f[-1] - 31 / 64) < 1e-12
    np.testing.assert_allclose(p[:, 1:].mean(), 1.0, rtol=0.05)


def test_distances_separate_distributions(tmp_path):
    a, b, c = _sets()
    assert raps_distance(a, b) < 0.05 < 1.0 < raps_distance(a, c)
    assert histogram_distance(a, b) < 0.05 < histogram_distance(a, c ** 3 / np.std(c ** 3))
    assert abs(c2st_accuracy(a, b, epochs=8)["accuracy"] - 0.5) < 0.15
    assert c2st_accuracy(a, c, epochs=8)["accuracy"] > 0.9
    rep = evaluate_realism(a, {"same": b, "blurred": c}, c2st_epochs=4, n_seeds=2)
    same, blurred = rep["synthetic"]["same"], rep["synthetic"]["blurred"]
    assert blurred["raps_distance_log10"] > same["raps_distance_log10"]
    # the stronger classifier and both seeds tell the blurred set apart, not the identical one
    for r, lo, hi in ((same, 0.3, 0.7), (blurred, 0.9, 1.0)):
        for k in ("c2st", "c2st_strong"):
            assert len(r[k]["accuracy"]) == 2 and lo <= min(r[k]["accuracy"]) <= r[k]["max"] <= hi, (k, r[k])
    assert blurred["c2st_accuracy"] == blurred["c2st"]["accuracy"][0]
    # per-band spectra: blurring removes high-frequency power (the last band), not the low one
    assert blurred["bands"][-1]["difference_log10"] < -1.0 < blurred["bands"][0]["difference_log10"]
    assert all(abs(b["difference_log10"]) < 0.05 for b in same["bands"])
    plot_raps(tmp_path / "s.png", a, {"same": b, "blurred": c}, pixel_size_A=1.0)
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_realism_reports_progress():
    """``genem evaluate realism`` shows progress: each classifier epoch of each set reaches the callback, and the
    command has the one --progress flag."""
    from genem.cli.main import build_parser

    a, b, _ = _sets()
    events = []
    evaluate_realism(a[:40], {"same": b[:40]}, c2st_epochs=3, progress=events.append)
    assert [(e.task, e.done, e.total) for e in events] == ([("c2st same", k, 3) for k in range(4)]
                                                           + [("c2st-strong same", k, 9) for k in range(10)])
    args = build_parser().parse_args(["evaluate", "realism", "--real", "r", "--synthetic", "s", "--out", "o.json",
                                      "--progress", "none"])
    assert args.progress == "none"
