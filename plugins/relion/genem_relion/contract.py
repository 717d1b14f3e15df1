"""RELION's External-job contract: the file names, exit codes and errors every program shares.

RELION runs, in the project directory::

    <program> --o External/jobNNN/ [--in_movies F] [--in_mics F] [--in_parts F] [--in_coords F]
              [--in_3dref F] [--in_mask F] [--<label> <value> ...] --j <threads> [other args]
              [--pipeline_control External/jobNNN/]

appending stdout to ``run.out`` and stderr to ``run.err`` in the job folder, and waits for exactly one of
``RELION_JOB_EXIT_SUCCESS`` / ``_FAILURE`` / ``_ABORTED`` there; ``RELION_JOB_ABORT_NOW`` appearing in the job
folder asks the job to stop. On success it reads ``RELION_OUTPUT_NODES.star`` to add the outputs to the pipeline.
"""
from __future__ import annotations

import sys
from pathlib import Path

EXIT_SUCCESS = "RELION_JOB_EXIT_SUCCESS"
EXIT_FAILURE = "RELION_JOB_EXIT_FAILURE"
EXIT_ABORTED = "RELION_JOB_EXIT_ABORTED"
EXIT_FILES = (EXIT_SUCCESS, EXIT_FAILURE, EXIT_ABORTED)
ABORT_NOW = "RELION_JOB_ABORT_NOW"
NODES_FILE = "RELION_OUTPUT_NODES.star"

RC_SUCCESS, RC_FAILURE, RC_ABORTED = 0, 1, 2
#: How a job ended: its exit file and its process exit code.
EXIT_FILE_OF = {"success": EXIT_SUCCESS, "failure": EXIT_FAILURE, "aborted": EXIT_ABORTED}
EXIT_CODE_OF = {"success": RC_SUCCESS, "failure": RC_FAILURE, "aborted": RC_ABORTED}


class JobAborted(BaseException):
    """Raised in the job's main thread when RELION asks the job to stop (``RELION_JOB_ABORT_NOW``).

    A ``BaseException`` (like ``KeyboardInterrupt``) so that ``except Exception`` in engine code cannot swallow it."""


class JobTerminated(BaseException):
    """Raised in the job's main thread on SIGTERM (a queue system or a user killing the job)."""


class JobFailed(Exception):
    """A failure with a message that is already clear (an engine command's own error line)."""


def remove_exit_files(out_dir) -> None:
    """Remove the exit files of an earlier run of the job."""
    for name in EXIT_FILES:
        if (Path(out_dir) / name).exists():
            (Path(out_dir) / name).unlink()


def write_exit_file(out_dir, name: str) -> None:
    """Leave exactly one exit file: remove the others, then create ``name``."""
    remove_exit_files(out_dir)
    (Path(out_dir) / name).touch()


def print_error(program: str, message: str) -> None:
    """The one-line error RELION users read at the end of run.err."""
    print(f"{program}: error: {message}", file=sys.stderr, flush=True)
