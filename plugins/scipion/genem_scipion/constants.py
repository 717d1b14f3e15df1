"""Names shared by the GenEM Scipion plugin."""

GENEM_VERSION = "0.1.0"

# Plugin variables (set in scipion.conf / the environment; see docs/scipion.md)
GENEM_HOME = "GENEM_HOME"                      # where defineBinaries installs the engine's environment
GENEM_ENV_ACTIVATION = "GENEM_ENV_ACTIVATION"  # shell command that activates the engine's environment (optional)
GENEM_PYTHON = "GENEM_PYTHON"                  # the engine environment's python (runs `python -m genem ...`)
GENEM_PYTHONPATH = "GENEM_PYTHONPATH"          # extra PYTHONPATH for the engine (a source checkout), optional
GENEM_PIP_SPEC = "GENEM_PIP_SPEC"              # what defineBinaries pip-installs into the engine's environment
GENEM_TORCH_SPEC = "GENEM_TORCH_SPEC"          # the torch requirement installed first (pick a CUDA build here)

DEFAULT_HOME = "genem-%s" % GENEM_VERSION      # relative to EM_ROOT
ENGINE_PROGRESS = ("--progress", "lines")      # the engine writes progress as plain lines into the protocol log
INSTALLED_FLAG = "genem_installed"

# Engine dataset layout (see genem.io.dataset)
MICROGRAPHS_STAR = "micrographs.star"
PARTICLES_STAR = "particles.star"
COORDINATES_DIR = "Coordinates"
GROUND_TRUTH_DIR = "ground_truth"
