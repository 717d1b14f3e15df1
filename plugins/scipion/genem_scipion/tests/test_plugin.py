"""The Plugin class: registration, menu, citations, engine environment and installation (no engine needed)."""
import configparser
import json
import os

import pytest


def test_plugin_is_registered_with_protocols_menu_and_citations():
    import pwem
    import genem_scipion
    from genem_scipion import protocols
    assert "genem_scipion" in pwem.Domain.getPlugins()
    for name in ("ProtGenemSimulate", "ProtGenemTranslate", "ProtGenemDenoise", "ProtGenemPick"):
        assert pwem.Domain.findClass(name) is getattr(protocols, name)
    conf = configparser.ConfigParser()
    conf.optionxform = str
    conf.read(os.path.join(os.path.dirname(genem_scipion.__file__), "protocols.conf"))
    menu = json.loads(conf.get("PROTOCOLS", "Protocols SPA"))

    def names(nodes):
        for n in nodes:
            if n.get("tag") == "protocol":
                yield n["value"]
            yield from names(n.get("children", []))
    assert set(names(menu)) == {"ProtGenemSimulate", "ProtGenemTranslate", "ProtGenemDenoise", "ProtGenemPick"}
    bib = pwem.Domain.getPlugin("genem_scipion")._bibtex
    assert "2312.02235" in bib["Zhang2023CryoGEM"]["journal"]
    assert "2401.01097" in bib["Zhang2024Restoration"]["journal"]
    assert set(protocols.ProtGenemDenoise._references) == {"Zhang2023CryoGEM", "Zhang2024Restoration"}


def test_define_binaries_installs_engine_in_its_own_venv():
    from genem_scipion import Plugin

    class RecordingEnv:
        def __init__(self):
            self.packages = []

        def addPackage(self, name, **kwargs):
            self.packages.append((name, kwargs))

    env = RecordingEnv()
    Plugin.defineBinaries(env)
    (name, kw), = env.packages
    assert name == "genem" and kw["default"]
    (cmd, target), = kw["commands"]
    assert cmd.startswith("python3 -m venv venv") and "pip install" in cmd and "import genem" in cmd
    assert target == "genem_installed" and cmd.endswith("touch genem_installed")


@pytest.fixture
def plugin_vars():
    from genem_scipion import Plugin
    saved = dict(Plugin._vars)
    yield Plugin
    Plugin._vars.clear()
    Plugin._vars.update(saved)


def test_engine_program_and_environment(plugin_vars, monkeypatch):
    Plugin = plugin_vars
    Plugin._vars.update(GENEM_PYTHON="/opt/genem env/bin/python", GENEM_ENV_ACTIVATION="",
                        GENEM_PYTHONPATH="/src/genem")
    assert Plugin.getEngineProgram() == "'/opt/genem env/bin/python'"
    monkeypatch.setenv("PYTHONPATH", "/scipion/site")
    monkeypatch.setenv("VIRTUAL_ENV", "/scipion/venv")
    env = Plugin.getEnviron()
    assert env["PYTHONPATH"] == "/src/genem" and "VIRTUAL_ENV" not in env
    Plugin._vars.update(GENEM_ENV_ACTIVATION="source /opt/genem/activate", GENEM_PYTHONPATH="")
    assert Plugin.getEngineProgram() == "source /opt/genem/activate && '/opt/genem env/bin/python'"
    assert "PYTHONPATH" not in Plugin.getEnviron()


def test_missing_engine_is_a_validation_error(plugin_vars):
    Plugin = plugin_vars
    Plugin._vars.update(GENEM_PYTHON="/nonexistent/genem/bin/python", GENEM_ENV_ACTIVATION="")
    errors = Plugin.validateInstallation()
    assert errors and "GENEM_PYTHON = /nonexistent/genem/bin/python" in errors[0]
    Plugin._vars.update(GENEM_PYTHON=os.path.realpath(os.sys.executable))
    assert Plugin.validateInstallation() == []
