#!/usr/bin/env bash
# Create the Scipion virtual environment for the plugin's tests: scipion-pyworkflow + scipion-em (pinned, as in
# ../shared/PLATFORMS.md) + pytest + this plugin (editable). Run from the repository root after the engine is
# installed in the main python. Idempotent: a second run only checks and returns (a few seconds).
# The venv is separate from the engine's environment because scipion-pyworkflow pins numpy/matplotlib/pillow and
# scipion-em pins scipy and mrcfile; the plugin calls the engine's python through GENEM_PYTHON.
set -euo pipefail
cd "$(dirname "$0")/../.."
# like .ci/run's RELION step: a failed install warns, and the Scipion tests then skip with the reason
trap 'echo "warning: Scipion environment setup failed (line $LINENO); Scipion tests will skip" >&2; exit 0' ERR
VENV="${GENEM_SCIPION_VENV:-.venv-scipion}"
PYWORKFLOW=3.11.7
PWEM=3.11.1
start=$(date +%s)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

if ! python3 -c "import tkinter" 2>/dev/null; then
  # pyworkflow imports tkinter; Debian's python3-tk serves the system python only
  echo "scipion setup: tkinter missing for $(python3 -c 'import sys; print(sys.executable)')" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-tk tk-dev >/dev/null) || true
fi

stamp="$VENV/.genem-scipion-$PYWORKFLOW-$PWEM"
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$stamp" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "scipion-pyworkflow==$PYWORKFLOW" "scipion-em==$PWEM" "pytest>=7"
  touch "$stamp"
fi
# the plugin itself, editable (source edits are live); reinstalled when its pyproject.toml changes
plugin_stamp="$VENV/.genem-scipion-plugin-$(sha1sum plugins/scipion/pyproject.toml | cut -c1-12)"
if [ ! -f "$plugin_stamp" ] || ! "$VENV/bin/python" -c "import genem_scipion" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q --no-deps -e plugins/scipion
  rm -f "$VENV"/.genem-scipion-plugin-*
  touch "$plugin_stamp"
fi
if ! "$VENV/bin/python" -c "import tkinter, pyworkflow, pwem, genem_scipion" 2>/tmp/genem_scipion_setup.err; then
  echo "scipion setup: the Scipion environment is not usable; Scipion tests will skip:" >&2
  cat /tmp/genem_scipion_setup.err >&2
  exit 0
fi
echo "scipion setup: $VENV ready (pyworkflow $PYWORKFLOW, pwem $PWEM) in $(( $(date +%s) - start )) s"
