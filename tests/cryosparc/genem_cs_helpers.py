"""Helpers for the cryoSPARC adapter tests (imported by name: pytest puts this folder on sys.path)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli_env() -> dict:
    """Environment for CLI subprocesses: this checkout's engine and plugin first (not an installed copy)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "plugins" / "cryosparc"), str(ROOT)] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def run_cli(args, *, env_update=None, **kw) -> subprocess.CompletedProcess:
    env = cli_env()
    env.update(env_update or {})
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, **kw)
