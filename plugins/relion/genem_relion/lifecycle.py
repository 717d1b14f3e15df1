"""One External job from start to exit file, in the manner of cryosparc-tools' ``job.run()``::

    job = RelionJob(spec, "External/job012/")
    with job.run():
        job.setup(argv)     # arguments, inputs, device; a bad one fails the job like any other error
        body(job)           # the program: map job.inputs / job.params onto the engine, job.add_node(...) results
    return job.exit_code

Start: the job folder is created, stale exit and node files of an earlier run are removed, the abort watch starts.
Success: every declared node is checked to exist, ``RELION_OUTPUT_NODES.star`` is written atomically in the format
of the project's RELION, then ``RELION_JOB_EXIT_SUCCESS``. Failure (any exception in the block): the traceback for
unexpected errors, then one line ``<program>: error: <file>: <problem>`` as the last line of run.err, then
``RELION_JOB_EXIT_FAILURE``. Abort: ``RELION_JOB_ABORT_NOW`` stops the work at the engine's next progress event
(:meth:`RelionJob.progress`), or, for work that reports nothing for a while, through a watcher thread that
interrupts the main thread; either ends in ``RELION_JOB_EXIT_ABORTED``. Exceptions never leave the block.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from types import SimpleNamespace

from genem.io.atomic import write_text_atomic
from genem.io.errors import GenemInputError
from genem.progress import LineProgress, ProgressCallback, ProgressEvent

from .arguments import ProgramSpec, check_inputs, parse_arguments, resolve_device
from .contract import (ABORT_NOW, EXIT_CODE_OF, EXIT_FILE_OF, NODES_FILE, JobAborted, JobFailed, JobTerminated,
                       print_error, remove_exit_files, write_exit_file)
from .nodes import detect_relion_version, format_output_nodes, node_type


class RelionJob:
    """What a program's body works with. Paths are relative to the project directory (the current directory)."""

    def __init__(self, spec: ProgramSpec, out_dir: str, *, project_dir=".", abort_poll_s: float = 0.5):
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.project_dir = Path(project_dir)
        self.abort_poll_s = abort_poll_s
        self.relion_version = "3.1"
        self.inputs: dict[str, Path | None] = {}
        self.params = SimpleNamespace()
        self.threads = 1
        self.device = "cpu"
        self.unknown_arguments: list[str] = []
        self.nodes: list[tuple[str, str]] = []
        self.status: str | None = None
        self.exit_code: int | None = None
        self._abort = threading.Event()
        self._lines = LineProgress(self.log)

    # ---- lifecycle
    @contextlib.contextmanager
    def run(self):
        """Own the job from start to exit file (see the module's docstring)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        remove_exit_files(self.out_dir)
        if (self.out_dir / NODES_FILE).exists():
            (self.out_dir / NODES_FILE).unlink()
        status = "failure"
        try:
            with _abort_watch(self):
                yield self
                self.check_abort()
            for name, _ in self.nodes:
                if not (self.project_dir / name).exists():
                    raise RuntimeError(f"output node {name} was declared but not written")
            write_text_atomic(self.out_dir / NODES_FILE, format_output_nodes(self.nodes, self.relion_version))
            status = "success"
        except JobAborted:
            status = "aborted"
        except (GenemInputError, JobFailed) as e:
            print_error(self.spec.name, str(e))
        except JobTerminated:
            print_error(self.spec.name, "terminated by SIGTERM")
        except KeyboardInterrupt:
            if self.abort_requested:
                status = "aborted"
            else:
                print_error(self.spec.name, "interrupted")
        except BaseException as e:  # noqa: BLE001 - every failure must end with an exit file
            traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
            first = str(e).splitlines()[0] if str(e) else ""
            print_error(self.spec.name, f"unexpected {type(e).__name__}" + (f": {first}" if first else ""))
        finally:
            if status == "aborted":
                self.log("aborted on request (RELION_JOB_ABORT_NOW)")
            elif status == "success":
                self.log(f"finished; output nodes: {', '.join(n for n, _ in self.nodes) or 'none'}")
            sys.stdout.flush()
            sys.stderr.flush()
            self.status, self.exit_code = status, EXIT_CODE_OF[status]
            write_exit_file(self.out_dir, EXIT_FILE_OF[status])

    def setup(self, argv) -> None:
        """Parse and check RELION's command line and the inputs; choose the device and threads."""
        spec = self.spec
        self.relion_version = detect_relion_version(self.project_dir)
        parsed, unknown = parse_arguments(spec, argv)
        self.threads = parsed.threads
        self.params = parsed.params
        check_inputs(spec, parsed.inputs)
        self.inputs = {k: (Path(v) if v else None) for k, v in parsed.inputs.items()}
        self.unknown_arguments = unknown
        import genem

        self.log(f"GenEM {genem.__version__}, RELION {self.relion_version} project, job folder {self.out_dir}, "
                 f"{self.threads} thread(s)")
        if unknown:
            self.warn(f"ignoring arguments this program does not know: {' '.join(unknown)}")
        for k, v in parsed.inputs.items():
            if v and k not in spec.inputs:
                self.warn(f"ignoring input --{k} {v}: {spec.name} does not read it")
        self.device = resolve_device(self.params.gpu)
        _set_threads(self.threads)
        self.check_abort()

    # ---- paths and nodes
    def path(self, *parts) -> Path:
        """A path inside the job folder, relative to the project directory (the form RELION's STAR files use)."""
        return self.out_dir.joinpath(*parts)

    def input(self, name: str) -> Path | None:
        return self.inputs.get(name)

    def add_node(self, path, kind: str) -> None:
        """Declare an output node (a file inside the job folder); written to RELION_OUTPUT_NODES.star on success."""
        node_type(kind, self.relion_version)  # validates the kind
        p = Path(path)
        if p.is_absolute() or not _is_inside(p, self.out_dir):
            raise ValueError(f"output node {p} must lie inside the job folder {self.out_dir}")
        name = str(p)
        if name not in [n for n, _ in self.nodes]:
            self.nodes.append((name, kind))

    # ---- messages
    def log(self, message: str) -> None:
        """A line for run.out."""
        print(f"{self.spec.name}: {message}", file=sys.stdout, flush=True)

    def warn(self, message: str) -> None:
        print(f"{self.spec.name}: warning: {message}", file=sys.stdout, flush=True)

    def progress(self, label: str | None = None) -> ProgressCallback:
        """The progress callback for an engine function: its events become progress lines in run.out
        (``label: 3/20 (15%), 12 s, about 68 s left``; ``label`` replaces the engine's task name), and each event
        is where a running job notices an abort request (JobAborted leaves the engine function)."""

        def callback(ev: ProgressEvent) -> None:
            self.check_abort()
            self._lines(dataclasses.replace(ev, task=label or ev.task, unit=""))

        return callback

    # ---- abort
    @property
    def abort_requested(self) -> bool:
        return self._abort.is_set() or (self.out_dir / ABORT_NOW).exists()

    def check_abort(self) -> None:
        """Raise JobAborted when RELION asked the job to stop (also called by every progress event)."""
        if self.abort_requested:
            self._abort.set()
            raise JobAborted()


@contextlib.contextmanager
def _abort_watch(job: RelionJob):
    """While the block runs: a thread that notices RELION_JOB_ABORT_NOW and interrupts the main thread (SIGUSR1 ->
    JobAborted), so that even work that reports no progress for a long time stops promptly; SIGTERM ->
    JobTerminated. Off the main thread only the flag is set (progress events raise)."""
    in_block, stop = threading.Event(), threading.Event()
    is_main = threading.current_thread() is threading.main_thread()
    main_ident = threading.get_ident()
    old: dict = {}

    def on_abort_signal(signum, frame):
        job._abort.set()
        if in_block.is_set():
            raise JobAborted()

    def on_term_signal(signum, frame):
        if in_block.is_set():
            raise JobTerminated()

    if is_main:
        old[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, on_abort_signal)
        old[signal.SIGTERM] = signal.signal(signal.SIGTERM, on_term_signal)

    def watch():
        while not stop.wait(job.abort_poll_s):
            if (job.out_dir / ABORT_NOW).exists():
                job._abort.set()
                if is_main and in_block.is_set():
                    signal.pthread_kill(main_ident, signal.SIGUSR1)
                return

    in_block.set()
    threading.Thread(target=watch, name="relion-abort-watcher", daemon=True).start()
    try:
        yield
    finally:
        in_block.clear()
        stop.set()
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.normpath(path)).relative_to(Path(os.path.normpath(folder)))
        return True
    except ValueError:
        return False


def _set_threads(n: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    try:
        import torch

        torch.set_num_threads(n)
    except Exception:  # pragma: no cover - torch is a dependency; threads are a hint
        pass
