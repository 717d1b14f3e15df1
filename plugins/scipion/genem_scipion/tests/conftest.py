"""Headless Scipion for the plugin's tests (runs in the Scipion virtual environment).

pyworkflow reads its configuration from the environment when it is first imported, so everything is set here,
before any test module imports pyworkflow/pwem/genem_scipion: SCIPION_HOME with config/hosts.conf, user data in a
temporary folder, SCIPION_DOMAIN=pwem, SCIPION_PYTHON = this interpreter (protocol steps run in a subprocess).
This folder has no __init__.py on purpose: importing ``genem_scipion.tests`` would import pyworkflow first.

The engine: GENEM_PYTHON names the python of the environment where ``genem`` is installed (the main test suite
passes its own interpreter); GENEM_PYTHONPATH may put a source checkout first. Without GENEM_PYTHON the protocol
tests skip.
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

_OWN_BASE = not os.environ.get("GENEM_SCIPION_TEST_DIR")
_BASE = Path(os.environ.get("GENEM_SCIPION_TEST_DIR") or tempfile.mkdtemp(prefix="genem-scipion-"))
os.environ["SCIPION_HOME"] = str(_BASE / "scipion_home")
os.environ["SCIPION_USER_DATA"] = str(_BASE / "user_data")
os.environ["SCIPION_TESTS_OUTPUT"] = str(_BASE / "user_data" / "Tests")
os.environ["SCIPION_DOMAIN"] = "pwem"
os.environ["SCIPION_PYTHON"] = sys.executable
os.environ["SCIPION_NOTIFY"] = "False"
os.environ.setdefault("SCIPION_DEBUG", "False")
(_BASE / "scipion_home" / "config").mkdir(parents=True, exist_ok=True)

import pyworkflow.protocol as pwprot  # noqa: E402  (after the environment is set)

_HOSTS = _BASE / "scipion_home" / "config" / "hosts.conf"
if not _HOSTS.exists():
    pwprot.HostConfig.writeBasic(str(_HOSTS))

SHARED_DATA = Path(os.environ.get("GENEM_SHARED_DATA",
                                  Path(__file__).resolve().parents[4].parent / "shared" / "data"))


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def engine_python():
    py = os.environ.get("GENEM_PYTHON")
    if not py:
        pytest.skip("GENEM_PYTHON is not set: no GenEM engine environment to run protocols with")
    return py


@pytest.fixture(scope="session")
def project():
    """A fresh headless Scipion project; the process works inside it, as Scipion's own tests do."""
    from pyworkflow.project import Manager
    name = "genem_scipion_tests_%d" % os.getpid()
    manager = Manager()
    proj = manager.createProject(name)
    cwd = os.getcwd()
    os.chdir(proj.getPath())
    yield proj
    os.chdir(cwd)
    if not os.environ.get("GENEM_SCIPION_KEEP"):
        shutil.rmtree(proj.getPath(), ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    if _OWN_BASE and not os.environ.get("GENEM_SCIPION_KEEP"):
        shutil.rmtree(_BASE, ignore_errors=True)
