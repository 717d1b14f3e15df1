"""Test-wide fixtures. The repository root and plugin folders come first on sys.path so that a checkout
(or a git worktree) tests its own code even when another checkout is pip-installed in editable mode.
Shared helpers for test modules live in tests/_support.py."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "plugins" / "cryosparc", ROOT / "plugins" / "relion", ROOT, ROOT / "tests"):
    sys.path.insert(0, str(p))

from _support import SHARED_DATA, relion_available, requires_relion  # noqa: E402,F401


@pytest.fixture
def shared_data():
    """Path to ../shared/data (real cryo-EM data); the test skips cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: on CI's 2 shared cores, two threads fighting over them are several times
    slower than one. Restores the previous count afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
