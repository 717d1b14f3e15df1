"""Helpers that test modules import (``from _support import ...``); tests/conftest.py puts tests/ on sys.path.
(Importing from ``conftest`` is ambiguous: several test folders have their own conftest.py.)"""
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GENEM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def relion_available() -> bool:
    return shutil.which("relion_reconstruct") is not None


requires_relion = pytest.mark.skipif(not relion_available(), reason="RELION binaries (Debian package relion) not installed")
