"""Scipion plugin for GenEM.

The GenEM engine (torch, its own numpy/scipy/mrcfile versions) lives in its own Python environment, apart from
Scipion's pinned one, as scipion-em-topaz and scipion-em-cryolo do for their tools. Protocol steps call the engine's
command line, ``<GENEM_PYTHON> -m genem <command> ...``, through ``Protocol.runJob``; this package only converts
Scipion sets to and from the engine's STAR/MRC files.
"""
import os
import shlex
from pathlib import Path

import pwem
import pyworkflow as pw
import pyworkflow.utils as pwutils

from .constants import (DEFAULT_HOME, ENGINE_PROGRESS, GENEM_ENV_ACTIVATION, GENEM_HOME, GENEM_PIP_SPEC,
                        GENEM_PYTHON, GENEM_PYTHONPATH, GENEM_TORCH_SPEC, GENEM_VERSION, INSTALLED_FLAG)

__version__ = GENEM_VERSION
_references = ["Zhang2023CryoGEM", "Zhang2024Restoration"]
_url = "https://arxiv.org/abs/2312.02235"


def _default_pip_spec():
    """The engine to install: the GenEM checkout this plugin came from when there is one, else the release."""
    root = Path(__file__).resolve().parents[3]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "genem"' in pyproject.read_text(errors="replace"):
        return str(root)
    return "genem==%s" % GENEM_VERSION


class Plugin(pwem.Plugin):
    _homeVar = GENEM_HOME
    _pathVars = []  # GENEM_HOME is only used when defineBinaries made the environment: see validateInstallation
    _supportedVersions = [GENEM_VERSION]
    _url = _url

    @classmethod
    def _defineVariables(cls):
        cls._defineEmVar(GENEM_HOME, DEFAULT_HOME, description="Folder of the GenEM engine environment")
        home = cls.getVar(GENEM_HOME)
        cls._defineVar(GENEM_ENV_ACTIVATION, "",
                       description="Shell command activating the GenEM engine environment (e.g. "
                                   "'conda activate genem'); empty when GENEM_PYTHON is enough")
        cls._defineVar(GENEM_PYTHON, os.path.join(home, "venv", "bin", "python"),
                       description="Python of the GenEM engine environment")
        cls._defineVar(GENEM_PYTHONPATH, "", description="Extra PYTHONPATH for the engine (a source checkout)")
        cls._defineVar(GENEM_PIP_SPEC, _default_pip_spec(), description="pip requirement of the engine")
        cls._defineVar(GENEM_TORCH_SPEC, "torch>=2.1", description="torch requirement installed first")

    @classmethod
    def validateInstallation(cls):
        """Protocols refuse to start (with this message) when the engine's python is missing."""
        python = cls.getVar(GENEM_PYTHON)
        if cls.getVar(GENEM_ENV_ACTIVATION) or not os.path.isabs(python) or os.path.exists(python):
            return []
        return ["The GenEM engine's python was not found: GENEM_PYTHON = %s." % python,
                "Install the engine with `scipion installb genem`, or set GENEM_PYTHON to the python of an "
                "environment where genem is installed (see docs/scipion.md)."]

    # ------------------------------------------------------------------ running the engine
    @classmethod
    def getEnvActivation(cls):
        activation = (cls.getVar(GENEM_ENV_ACTIVATION) or "").strip()
        if activation.startswith("conda "):
            activation = "%s %s" % (cls.getCondaActivationCmd(), activation)
        return activation

    @classmethod
    def getEngineProgram(cls):
        """The program string handed to runJob: activation (if any) and the engine's python."""
        python = shlex.quote(cls.getVar(GENEM_PYTHON))
        activation = cls.getEnvActivation()
        return "%s && %s" % (activation, python) if activation else python

    @classmethod
    def getEnviron(cls):
        """Environment for engine calls: Scipion's venv must not leak into the engine's python."""
        environ = pwutils.Environ(os.environ)
        for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            environ.pop(var, None)
        extra = cls.getVar(GENEM_PYTHONPATH)
        if extra:
            environ["PYTHONPATH"] = extra
        return environ

    @classmethod
    def runGenem(cls, protocol, command, args, cwd=None):
        """Run ``python -m genem <command> <args...> --progress lines`` in the engine's environment from a
        protocol step: the engine's progress lines land in the protocol's log.

        On failure, raise an error carrying the engine's own one-line message (``genem: error: ...``)."""
        import subprocess
        try:
            protocol.runJob(cls.getEngineProgram(),
                            ["-m", "genem", command] + [str(a) for a in args] + list(ENGINE_PROGRESS),
                            env=cls.getEnviron(), cwd=cwd, numberOfThreads=1, numberOfMpi=1)
        except subprocess.CalledProcessError as e:
            message = _engine_error_message(protocol)
            raise RuntimeError("GenEM %s failed (exit %s): %s" % (command, e.returncode, message)) from None

    @classmethod
    def engineHasCommand(cls, *words):
        """True when the engine's CLI knows ``genem <words...>`` (its --help exits 0)."""
        import subprocess
        cmd = "%s -m genem %s --help" % (cls.getEngineProgram(), " ".join(shlex.quote(w) for w in words))
        try:
            return subprocess.run(cmd, shell=True, env=cls.getEnviron(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=120).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    # ------------------------------------------------------------------ installing the engine
    @classmethod
    def defineBinaries(cls, env):
        """`scipion installb genem`: a virtual environment at GENEM_HOME/venv with torch and the engine."""
        pip = "venv/bin/python -m pip install"

        def words(var):  # a requirement may carry pip options (e.g. --index-url for a CUDA build of torch)
            return " ".join(shlex.quote(w) for w in shlex.split(cls.getVar(var)))
        commands = " && ".join([
            "python3 -m venv venv",
            "%s --upgrade pip" % pip,
            "%s %s" % (pip, words(GENEM_TORCH_SPEC)),
            "%s %s" % (pip, words(GENEM_PIP_SPEC)),
            "venv/bin/python -c 'import genem.cli.main'",
            "touch %s" % INSTALLED_FLAG,
        ])
        env.addPackage("genem", version=GENEM_VERSION, tar="void.tgz",
                       commands=[(commands, INSTALLED_FLAG)], neededProgs=["python3"], default=True)


def _engine_error_message(protocol):
    """The last ``genem: error`` line (or last non-empty line) of the protocol's logs."""
    lines = []
    for path in protocol.getLogPaths()[:2]:
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                lines.extend(line.strip() for line in f if line.strip())
    errors = [line for line in lines if "genem: error" in line]
    if errors:
        return errors[-1].split("genem: error:", 1)[-1].strip()
    return lines[-1] if lines else "no output (see the protocol's logs)"
