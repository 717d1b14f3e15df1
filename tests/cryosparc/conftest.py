"""Shared fixtures for the cryoSPARC adapter tests: one small simulated dataset per session."""
from pathlib import Path

import pytest
from genem_cs_helpers import run_cli


@pytest.fixture(scope="session")
def sim_dataset(tmp_path_factory) -> Path:
    """4 noise-free, ice-free micrographs x 50 particles, box 64 at 4 A/px (~10 s); read-only for the tests."""
    try:
        import genem.simulate  # noqa: F401
    except ImportError:
        pytest.skip("genem.simulate not available on this branch yet")
    out = tmp_path_factory.mktemp("sim") / "sim"
    r = run_cli(["-m", "genem", "simulate", "--out", str(out), "--n-micrographs", "4", "--micrograph-size", "512",
                 "--box", "64", "--particles", "50", "--pixel-size-A", "4", "--seed", "2", "--noise-mode", "none",
                 "--ice", "none"],
                timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return out
