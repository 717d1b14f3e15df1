"""Runs the Scipion plugin's own tests (plugins/scipion/genem_scipion/tests) inside the Scipion virtual
environment that plugins/scipion/ci_setup.sh creates (.venv-scipion): scipion-pyworkflow/scipion-em pin numpy,
scipy, matplotlib and mrcfile, so they cannot share this interpreter. The engine is this interpreter: the
plugin's protocols call ``<this python> -m genem ...`` (GENEM_PYTHON), with this checkout first on its path."""
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from _support import SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugins" / "scipion"
VENV_PYTHON = Path(os.environ.get("GENEM_SCIPION_VENV", ROOT / ".venv-scipion")) / "bin" / "python"

pytestmark = pytest.mark.scipion


def _venv_ready():
    if not VENV_PYTHON.exists():
        return f"Scipion venv not found at {VENV_PYTHON.parent.parent} (create it with bash plugins/scipion/ci_setup.sh)"
    probe = subprocess.run([str(VENV_PYTHON), "-c", "import tkinter, pyworkflow, pwem, pytest, genem_scipion"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return "Scipion venv is not usable: " + (probe.stderr.strip().splitlines() or ["?"])[-1]
    return None


@pytest.fixture(scope="module")
def scipion_venv():
    why = _venv_ready()
    if why:
        pytest.skip(why)
    return VENV_PYTHON


def _run_plugin_tests(venv_python, tmp_path, *selection):
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(var, None)
    env.update(GENEM_PYTHON=sys.executable, GENEM_PYTHONPATH=str(ROOT), GENEM_SHARED_DATA=str(SHARED_DATA),
               GENEM_SCIPION_TEST_DIR=str(tmp_path))
    # this checkout's plugin, also in the protocol steps Scipion runs in subprocesses (the venv may hold an
    # editable install of another checkout); the engine's own environment drops it (Plugin.getEnviron)
    env["PYTHONPATH"] = str(PLUGIN)
    cmd = [str(venv_python), "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
           *selection]
    proc = subprocess.run(cmd, cwd=PLUGIN, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    print(out[-6000:])
    for line in out.splitlines():  # make the inner skips visible in this suite's summary
        if re.match(r"^SKIPPED \[", line):
            warnings.warn("Scipion venv test " + line, stacklevel=2)
    return proc.returncode, out


def test_conversion_and_plugin_in_scipion_venv(scipion_venv, tmp_path):
    rc, out = _run_plugin_tests(scipion_venv, tmp_path, "genem_scipion/tests/test_convert.py",
                                "genem_scipion/tests/test_plugin.py")
    assert rc == 0, out[-4000:]
    assert " passed" in out


def test_protocols_in_scipion_venv(scipion_venv, tmp_path):
    rc, out = _run_plugin_tests(scipion_venv, tmp_path, "genem_scipion/tests/test_protocols.py")
    assert rc == 0, out[-4000:]
    assert " passed" in out
