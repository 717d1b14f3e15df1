"""benchmarks/topaz_picker.py: the conversions between a GenEM dataset / RELION coordinate STARs and Topaz's
coordinate tables at Topaz's scale, and how a missing or broken Topaz is reported (Topaz itself runs only in the
benchmark, in its own environment)."""
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.topaz_picker import factor, find_topaz, write_picks, write_targets  # noqa: E402
from genem.io import GenemDataset  # noqa: E402
from genem.pick import read_coordinates_star  # noqa: E402
from genem.simulate import SimulationConfig, run_simulation  # noqa: E402


def test_integer_downsampling_factors():
    assert factor(10.72) == 2 and factor(5.36) == 4
    with pytest.raises(ValueError, match="integer factor"):
        factor(7.0)


def test_targets_and_picks_round_trip(tmp_path):
    sim = run_simulation(SimulationConfig(n_micrographs=2, micrograph_size_px=(128, 128), pixel_size_A=10.72,
                                          particle_box_px=16, particles_per_micrograph=5, seed=1), tmp_path / "sim")
    n = write_targets(sim, tmp_path / "targets.txt", 2)
    table = pd.read_csv(tmp_path / "targets.txt", sep="\t")
    assert list(table.columns) == ["image_name", "x_coord", "y_coord"] and len(table) == n > 0
    stems = sorted(set(table["image_name"]))
    ds = GenemDataset.open(sim)
    assert stems == sorted(Path(str(m)).stem for m in ds.micrographs()["rlnMicrographName"])
    for name in ds.micrographs()["rlnMicrographName"]:
        xy = read_coordinates_star(ds.coordinates_path(name))[0]
        got = table[table["image_name"] == Path(str(name)).stem][["x_coord", "y_coord"]].to_numpy()
        assert np.abs(got * 2 - xy).max() <= 1.0  # halved and rounded

    # Topaz's extract output at 1/4 scale -> one STAR per micrograph in input pixels, scores kept, empty ones too
    picks = table.assign(score=np.linspace(2.0, -3.0, len(table)))
    picks.to_csv(tmp_path / "picks.txt", sep="\t", index=False)
    write_picks(tmp_path / "picks.txt", tmp_path / "out", 4, [*stems, "no_picks"])
    for stem in stems:
        xy, fom = read_coordinates_star(tmp_path / "out" / f"{stem}.star")
        rows = picks[picks["image_name"] == stem]
        assert np.array_equal(xy, rows[["x_coord", "y_coord"]].to_numpy(np.float64) * 4)
        assert np.allclose(fom, rows["score"])
    assert len(read_coordinates_star(tmp_path / "out" / "no_picks.star")[0]) == 0


def test_missing_or_broken_topaz_is_a_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    exe, why = find_topaz(None)
    assert exe is None and "no `topaz` executable" in why
    broken = tmp_path / "topaz"
    broken.write_text("#!/bin/sh\necho 'ImportError: operator torchvision::nms does not exist' >&2\nexit 1\n")
    os.chmod(broken, 0o755)
    exe, why = find_topaz(str(broken))
    assert exe is None and "torchvision::nms" in why
