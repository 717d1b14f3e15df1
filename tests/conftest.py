"""Test-wide fixtures. The repository root and plugin folders come first on sys.path so that a checkout
(or a git worktree) tests its own code even when another checkout is pip-installed in editable mode."""
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "plugins" / "cryosparc", ROOT / "plugins" / "relion", ROOT):
    sys.path.insert(0, str(p))

SHARED_DATA = Path(os.environ.get("GENEM_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
    """Path to ../shared/data (real cryo-EM data); the test skips cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def relion_available() -> bool:
    return shutil.which("relion_reconstruct") is not None


requires_relion = pytest.mark.skipif(not relion_available(), reason="RELION binaries (Debian package relion) not installed")
