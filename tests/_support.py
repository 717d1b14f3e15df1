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


def run_torchrun(args, nproc: int = 2, timeout: float = 300):
    """Run ``torchrun --standalone --nproc-per-node NPROC -m genem ARGS`` on this checkout's code (CPU, gloo);
    fails the test with the ranks' output if it does not succeed."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins" / "relion"),
                                                        str(ROOT / "plugins" / "cryosparc"),
                                                        os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "genem", *map(str, args)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res
