"""Process supervision: each program's ``main``.

:func:`run_program` answers ``--help``; otherwise it is a small supervisor that runs the job in a worker process
(the same program with ``GENEM_RELION_WORKER=1``) and writes ``RELION_JOB_EXIT_FAILURE`` itself if the worker dies
without one (segfault, out-of-memory kill), so the pipeliner never waits forever. The worker runs the job in
:meth:`RelionJob.run <genem_relion.lifecycle.RelionJob.run>`.
"""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from .arguments import ProgramSpec, peek_output_dir
from .contract import (ABORT_NOW, EXIT_ABORTED, EXIT_CODE_OF, EXIT_FAILURE, EXIT_FILE_OF, EXIT_FILES, RC_ABORTED,
                       RC_FAILURE, print_error, remove_exit_files, write_exit_file)
from .lifecycle import RelionJob

#: Set in the worker's environment: run the job in this process.
WORKER_ENV = "GENEM_RELION_WORKER"
#: Seconds the supervisor waits for a worker to stop after an abort request before killing it.
ABORT_GRACE_ENV = "GENEM_RELION_ABORT_GRACE_S"


def run_program(spec: ProgramSpec, body: Callable[[RelionJob], None], argv: Sequence[str] | None = None) -> int:
    """A program's ``main``: ``--help``; in a worker (``GENEM_RELION_WORKER=1``) the job itself; otherwise a
    supervisor process that runs the job in a worker and guarantees an exit file even if the worker dies."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(spec.help_text())
        return 0
    out_dir = peek_output_dir(argv)
    if out_dir is None:
        print_error(spec.name, "--o <job folder> is required (RELION passes --o External/jobNNN/); see --help")
        return RC_FAILURE
    if os.environ.get(WORKER_ENV) != "1":
        return _supervise(spec, argv, Path(out_dir))
    job = RelionJob(spec, out_dir)
    with job.run():
        job.setup(argv)
        body(job)
    return job.exit_code


def _supervise(spec: ProgramSpec, argv: list[str], out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_exit_files(out_dir)
    from genem.cli.main import PROCESS_ENV

    env = {**PROCESS_ENV, **os.environ}  # the CLI's process-wide settings (torch is imported in the worker)
    env[WORKER_ENV] = "1"
    env["PYTHONPATH"] = os.pathsep.join([*_import_roots(spec.module), *filter(None, [env.get("PYTHONPATH", "")])])
    env.setdefault("PYTHONFAULTHANDLER", "1")  # a segfault still leaves a Python traceback in run.err
    code = "import sys, importlib; sys.exit(importlib.import_module(sys.argv[1]).main(sys.argv[2:]))"
    sys.stdout.flush()
    sys.stderr.flush()
    child = subprocess.Popen([sys.executable, "-c", code, spec.module, *argv], env=env)

    # SIGTERM (a queue system, kill) is passed on; Ctrl-C already reaches the worker through the terminal's
    # process group, so the supervisor only keeps waiting for it to finish and write its exit file
    old = {signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum)),
           signal.SIGINT: signal.signal(signal.SIGINT, lambda signum, frame: None)}
    grace = float(os.environ.get(ABORT_GRACE_ENV, "60"))
    abort_seen = None
    try:
        while True:
            try:
                rc = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            if (out_dir / ABORT_NOW).exists():
                abort_seen = abort_seen or time.monotonic()
                if time.monotonic() - abort_seen > grace:
                    print(f"{spec.name}: the worker did not stop within {grace:g} s of the abort request; killing it",
                          flush=True)
                    child.kill()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    present = [f for f in EXIT_FILES if (out_dir / f).exists()]
    if len(present) == 1:  # the worker finished its job (even if it was killed just after): report that
        return {EXIT_FILE_OF[s]: code for s, code in EXIT_CODE_OF.items()}[present[0]]
    if (out_dir / ABORT_NOW).exists():
        write_exit_file(out_dir, EXIT_ABORTED)
        print(f"{spec.name}: aborted on request (RELION_JOB_ABORT_NOW)", flush=True)
        return RC_ABORTED
    how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
    print_error(spec.name, f"the worker process {how} before finishing (out of memory?); see the messages above")
    write_exit_file(out_dir, EXIT_FAILURE)
    return RC_FAILURE


def _import_roots(module: str) -> list[str]:
    """Folders that must be on PYTHONPATH for the worker to import ``module`` and the engine as this process does."""
    roots = []
    for name in (module.split(".")[0], "genem", "genem_relion"):
        try:
            m = importlib.import_module(name)
        except ImportError:
            continue
        f = getattr(m, "__file__", None)
        if f:
            root = str(Path(f).resolve().parent.parent if Path(f).name == "__init__.py" else Path(f).resolve().parent)
            if root not in roots:
                roots.append(root)
    return roots
