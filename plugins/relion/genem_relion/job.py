"""RELION's External-job contract, implemented once for every GenEM program.

RELION runs, in the project directory::

    <program> --o External/jobNNN/ [--in_movies F] [--in_mics F] [--in_parts F] [--in_coords F]
              [--in_3dref F] [--in_mask F] [--<label> <value> ...] --j <threads> [other args]
              [--pipeline_control External/jobNNN/]

appending stdout to ``run.out`` and stderr to ``run.err`` in the job folder, and waits for exactly one of
``RELION_JOB_EXIT_SUCCESS`` / ``_FAILURE`` / ``_ABORTED`` there; ``RELION_JOB_ABORT_NOW`` appearing in the job
folder asks the job to stop. On success it reads ``RELION_OUTPUT_NODES.star`` to add the outputs to the pipeline.

This module owns all of that:

* :func:`run_program` is each program's ``main``: a small supervisor that runs the job in a worker process and
  writes ``RELION_JOB_EXIT_FAILURE`` itself if the worker dies without one (segfault, out-of-memory kill), so the
  pipeliner never waits forever;
* :func:`relion_job` is the one context manager that owns the job's start (stale exit files removed, arguments
  parsed and checked), success (output nodes written in the running RELION's format, then the exit file),
  failure (one clear line at the end of ``run.err``) and abort (a watcher thread that interrupts the work);
* :class:`RelionJob` is what a program's body sees: inputs, parameters, threads, device, progress lines for
  ``run.out``, output paths inside the job folder, and :meth:`RelionJob.add_node`.

The programs (``simulate``, ``translate``, ``denoise``) only declare a :class:`ProgramSpec` and a body.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Sequence

from genem.io.atomic import write_text_atomic
from genem.io.errors import GenemInputError

EXIT_SUCCESS = "RELION_JOB_EXIT_SUCCESS"
EXIT_FAILURE = "RELION_JOB_EXIT_FAILURE"
EXIT_ABORTED = "RELION_JOB_EXIT_ABORTED"
EXIT_FILES = (EXIT_SUCCESS, EXIT_FAILURE, EXIT_ABORTED)
ABORT_NOW = "RELION_JOB_ABORT_NOW"
NODES_FILE = "RELION_OUTPUT_NODES.star"

RC_SUCCESS, RC_FAILURE, RC_ABORTED = 0, 1, 2

#: RELION ``--in_*`` arguments (as on the command line) and the External-job GUI field that fills each.
INPUT_ARGUMENTS = {
    "in_movies": "in_mov",
    "in_mics": "in_mic",
    "in_parts": "in_part",
    "in_coords": "in_coords",
    "in_3dref": "in_3dref",
    "in_mask": "in_mask",
}

#: Output node kinds: (RELION 3.1 integer type, RELION 4.0 type label, RELION 5.0 type label).
NODE_KINDS = {
    "movies": (0, "MicrographMoviesData.star.relion", "MicrographMovieGroupMetadata.star.relion"),
    "micrographs": (1, "MicrographsData.star.relion", "MicrographGroupMetadata.star.relion"),
    "coordinates": (2, "MicrographsCoords.star.relion", "MicrographCoordsGroup.star.relion"),
    "particles": (3, "ParticlesData.star.relion", "ParticleGroupMetadata.star.relion"),
    "map": (6, "DensityMap.mrc", "DensityMap.mrc"),
    "mask": (7, "Mask3D.mrc", "Mask3D.mrc"),
}
RELION_VERSIONS = ("3.1", "4.0", "5.0")
#: Arguments RELION adds on its own (ignored without a warning); each takes one value.
RELION_CONTROL_ARGUMENTS = ("--pipeline_control", "--pipeline-control")

_WORKER_ENV = "GENEM_RELION_WORKER"
_VERSION_ENV = "GENEM_RELION_VERSION"
_ABORT_GRACE_ENV = "GENEM_RELION_ABORT_GRACE_S"


class JobAborted(BaseException):
    """Raised in the job's main thread when RELION asks the job to stop (``RELION_JOB_ABORT_NOW``).

    A ``BaseException`` (like ``KeyboardInterrupt``) so that ``except Exception`` in engine code cannot swallow it."""


class JobTerminated(BaseException):
    """Raised in the job's main thread on SIGTERM (a queue system or a user killing the job)."""


class JobFailed(Exception):
    """A failure with a message that is already clear (an engine command's own error line)."""


# --------------------------------------------------------------------------------------------------- parameters
_TRUE = {"yes", "y", "true", "1", "on"}
_FALSE = {"no", "n", "false", "0", "off"}


@dataclasses.dataclass(frozen=True)
class Param:
    """A user parameter: in the External job tab, ``label`` goes in a "Param label" field and the value beside it.

    ``kind`` is one of ``int``, ``float``, ``range`` (a number or ``low,high``), ``str``, ``bool`` (yes/no),
    ``choice`` (one of ``choices``) or ``file`` (a path relative to the project directory that must exist).
    An empty value means the default (``None`` = the engine's own default)."""

    label: str
    kind: str
    default: Any
    help: str
    choices: tuple = ()
    minimum: float | None = None

    def __post_init__(self):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.label):
            raise ValueError(f"parameter label {self.label!r} must be lower_snake_case")
        if self.kind not in ("int", "float", "range", "str", "bool", "choice", "file"):
            raise ValueError(f"unknown parameter kind {self.kind!r}")
        if self.kind == "choice" and self.default is not None and self.default not in self.choices:
            raise ValueError(f"default {self.default!r} of {self.label} not among {self.choices}")

    def parse(self, raw: str | None):
        where = f"--{self.label}"
        if raw is None or raw.strip() == "":
            return self.default
        raw = raw.strip()
        if self.kind == "int":
            try:
                value = int(raw)
            except ValueError:
                raise GenemInputError(where, f"expected a whole number, got {raw!r}") from None
        elif self.kind == "float":
            try:
                value = float(raw)
            except ValueError:
                raise GenemInputError(where, f"expected a number, got {raw!r}") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise GenemInputError(where, f"expected a finite number, got {raw!r}")
        elif self.kind == "range":
            parts = [x for x in raw.split(",")]
            try:
                vals = [float(x) for x in parts]
            except ValueError:
                raise GenemInputError(where, f"expected a number or low,high; got {raw!r}") from None
            if len(vals) not in (1, 2) or not all(v == v and abs(v) != float("inf") for v in vals):
                raise GenemInputError(where, f"expected a number or low,high; got {raw!r}")
            if len(vals) == 2 and vals[1] < vals[0]:
                raise GenemInputError(where, f"low,high is reversed: {raw!r}")
            if self.minimum is not None and vals[0] < self.minimum:
                raise GenemInputError(where, f"must be at least {self.minimum:g}, got {raw!r}")
            return vals[0] if len(vals) == 1 else (vals[0], vals[1])
        elif self.kind == "bool":
            low = raw.lower()
            if low not in _TRUE | _FALSE:
                raise GenemInputError(where, f"expected yes or no, got {raw!r}")
            return low in _TRUE
        elif self.kind == "choice":
            if raw not in self.choices:
                raise GenemInputError(where, f"expected one of {', '.join(map(str, self.choices))}; got {raw!r}")
            return raw
        elif self.kind == "file":
            if not Path(raw).is_file():
                raise GenemInputError(raw, f"file given as --{self.label} not found (paths are relative to the "
                                           "RELION project directory)")
            return Path(raw)
        else:
            return raw
        if self.minimum is not None and value < self.minimum:
            raise GenemInputError(where, f"must be at least {self.minimum:g}, got {raw!r}")
        return value


GPU_PARAM = Param("gpu", "str", "", "GPU to run on, e.g. 0; leave empty to run on the CPU")


@dataclasses.dataclass(frozen=True)
class ProgramSpec:
    """What a program declares: its name, the module holding ``main``, the ``--in_*`` inputs it reads and its
    user parameters. ``inputs`` maps a RELION input argument (``in_parts``...) to its help text;
    ``required_inputs`` lists alternatives: each entry is a tuple of inputs of which at least one must be given."""

    name: str
    module: str
    description: str
    inputs: dict
    params: tuple
    required_inputs: tuple = ()

    def __post_init__(self):
        for k in self.inputs:
            if k not in INPUT_ARGUMENTS:
                raise ValueError(f"unknown RELION input {k!r}")
        labels = [p.label for p in self.all_params]
        if len(set(labels)) != len(labels):
            raise ValueError("duplicate parameter labels")
        if set(labels) & {"o", "j", *INPUT_ARGUMENTS}:
            raise ValueError("parameter labels must not shadow RELION's own arguments")

    @property
    def all_params(self) -> tuple:
        return tuple(self.params) + (GPU_PARAM,)

    def help_text(self) -> str:
        lines = [f"usage: {self.name} --o External/jobNNN/ [inputs] [--<label> <value> ...] [--j threads]", "",
                 self.description, "", "RELION inputs (External job, Input tab):"]
        for k, h in self.inputs.items():
            lines.append(f"  --{k:<10} (GUI field {INPUT_ARGUMENTS[k]}) {h}")
        lines += ["", "Parameters (External job, Params tab: label = value; empty value = default):"]
        for p in self.all_params:
            extra = f" [{'|'.join(map(str, p.choices))}]" if p.choices else ""
            lines.append(f"  {p.label:<22} {p.kind}{extra}, default {p.default!r}: {p.help}")
        lines += ["", "  --j N  threads (Running tab)"]
        return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print usage and exit(2); the job must fail cleanly instead
        raise GenemInputError("command line", message)


def _normalise_argv(argv: Sequence[str], spec: ProgramSpec) -> list[str]:
    """RELION passes ``--label`` with no value when a parameter's value is empty: give it an explicit empty one,
    and drop RELION's own control arguments."""
    known = {f"--{p.label}" for p in spec.all_params} | {f"--{k}" for k in INPUT_ARGUMENTS} | {"--o", "--j"}
    out: list[str] = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        a = argv[i]
        if a in RELION_CONTROL_ARGUMENTS:
            i += 2
            continue
        if any(a.startswith(c + "=") for c in RELION_CONTROL_ARGUMENTS):
            i += 1
            continue
        out.append(a)
        if a in known:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is None or (nxt.startswith("--") and len(nxt) > 2):
                out.append("")
            else:
                out.append(nxt)
                i += 1
        i += 1
    return out


def parse_arguments(spec: ProgramSpec, argv: Sequence[str]) -> tuple[SimpleNamespace, list[str]]:
    """Parse RELION's command line; return ``(namespace, unknown arguments)``. Raises GenemInputError."""
    p = _Parser(prog=spec.name, add_help=False, allow_abbrev=False)
    p.add_argument("--o", dest="o", required=True)
    p.add_argument("--j", dest="j", default="")
    for k in INPUT_ARGUMENTS:
        p.add_argument(f"--{k}", dest=k, default="")
    for prm in spec.all_params:
        p.add_argument(f"--{prm.label}", dest=f"param_{prm.label}", default=None)
    ns, unknown = p.parse_known_args(_normalise_argv(argv, spec))
    if not ns.o.strip():
        raise GenemInputError("--o", "an output job folder is required (RELION passes --o External/jobNNN/)")
    threads = 1
    if ns.j.strip():
        try:
            threads = int(ns.j)
        except ValueError:
            raise GenemInputError("--j", f"expected a number of threads, got {ns.j!r}") from None
        if threads < 1:
            raise GenemInputError("--j", f"must be at least 1, got {threads}")
    params = {prm.label: prm.parse(getattr(ns, f"param_{prm.label}")) for prm in spec.all_params}
    inputs = {k: (getattr(ns, k).strip() or None) for k in INPUT_ARGUMENTS}
    out = SimpleNamespace(out_dir=ns.o.strip(), threads=threads, params=SimpleNamespace(**params), inputs=inputs)
    return out, list(unknown)


def peek_output_dir(argv: Sequence[str]) -> str | None:
    """The value of ``--o`` without a full parse (so that even a bad command line can end with an exit file)."""
    argv = list(argv)
    for i, a in enumerate(argv):
        if a == "--o" and i + 1 < len(argv) and argv[i + 1].strip() and not argv[i + 1].startswith("--"):
            return argv[i + 1].strip()
        if a.startswith("--o=") and a[4:].strip():
            return a[4:].strip()
    return None


def resolve_device(gpu: str) -> str:
    """Map the GPU parameter onto a torch device string; fail clearly when a GPU is asked for and none is there."""
    g = (gpu or "").strip().lower()
    if g in ("", "cpu", "no", "none", "-1"):
        return "cpu"
    first = re.split(r"[,:\s]+", g.replace("cuda:", ""))[0]
    if not first.isdigit():
        raise GenemInputError("--gpu", f"expected a GPU number such as 0 (or empty for the CPU), got {gpu!r}")
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        raise GenemInputError("--gpu", f"asks for GPU {first} but torch sees no CUDA device here; "
                                       "leave the gpu parameter empty to run on the CPU")
    if int(first) >= n:
        raise GenemInputError("--gpu", f"asks for GPU {first} but only {n} CUDA device(s) are visible")
    return f"cuda:{first}"


# --------------------------------------------------------------------------------------------------- versions / nodes
def detect_relion_version(project_dir=".") -> str:
    """The RELION that owns the project: ``3.1``, ``4.0`` or ``5.0``, read from ``default_pipeline.star``.

    Integer node/process types = 3.1; type labels = 4.0, or 5.0 when the file says ``# version 50001``.
    ``GENEM_RELION_VERSION`` overrides; a folder that is not a RELION project counts as 3.1."""
    env = os.environ.get(_VERSION_ENV, "").strip()
    if env:
        if env not in RELION_VERSIONS:
            raise GenemInputError(_VERSION_ENV, f"expected one of {', '.join(RELION_VERSIONS)}, got {env!r}")
        return env
    p = Path(project_dir) / "default_pipeline.star"
    if not p.is_file():
        return "3.1"
    text = p.read_text(errors="replace")
    if re.search(r"^#\s*version\s+5\d{4}", text, flags=re.M):
        return "5.0"
    if re.search(r"_rlnPipeLine(Node|Process)(TypeLabel|StatusLabel)\b", text):
        return "4.0"
    return "3.1"


def node_type(kind: str, relion_version: str):
    """The node type RELION ``relion_version`` expects for ``kind`` (an int for 3.1, a label for 4.0 / 5.0)."""
    if kind not in NODE_KINDS:
        raise ValueError(f"unknown node kind {kind!r}; expected one of {sorted(NODE_KINDS)}")
    if relion_version not in RELION_VERSIONS:
        raise ValueError(f"unknown RELION version {relion_version!r}")
    return NODE_KINDS[kind][RELION_VERSIONS.index(relion_version)]


def format_output_nodes(nodes: Sequence[tuple[str, str]], relion_version: str) -> str:
    """Text of ``RELION_OUTPUT_NODES.star`` for ``[(node path relative to the project, kind), ...]``."""
    stamp = "50001" if relion_version == "5.0" else "30001"
    column = "_rlnPipeLineNodeType" if relion_version == "3.1" else "_rlnPipeLineNodeTypeLabel"
    lines = ["", f"# version {stamp}", "", "data_output_nodes", "", "loop_",
             "_rlnPipeLineNodeName #1", f"{column} #2"]
    for name, kind in nodes:
        if any(c.isspace() for c in str(name)):
            raise ValueError(f"RELION node names cannot contain spaces: {name!r}")
        lines.append(f"{name} {node_type(kind, relion_version)}")
    return "\n".join(lines) + "\n\n"


def read_output_nodes(path) -> list[tuple[str, str]]:
    """Read a ``RELION_OUTPUT_NODES.star`` back as ``[(name, type as text)]`` (any of the three formats)."""
    rows, in_loop, cols = [], False, []
    for line in Path(path).read_text().splitlines():
        s = line.strip()
        if s.startswith("loop_"):
            in_loop = True
            continue
        if in_loop and s.startswith("_"):
            cols.append(s.split()[0])
            continue
        if in_loop and s and not s.startswith("#"):
            parts = s.split()
            rows.append((parts[0], parts[1]))
    return rows


# --------------------------------------------------------------------------------------------------- the job
class RelionJob:
    """What a program's body works with. Paths are relative to the project directory (the current directory)."""

    def __init__(self, spec: ProgramSpec, out_dir: str, *, project_dir="."):
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.project_dir = Path(project_dir)
        self.relion_version = "3.1"
        self.inputs: dict[str, Path | None] = {}
        self.params = SimpleNamespace()
        self.threads = 1
        self.device = "cpu"
        self.unknown_arguments: list[str] = []
        self.nodes: list[tuple[str, str]] = []
        self.status: str | None = None
        self.exit_code: int | None = None
        self.progress_interval_s = 2.0
        self._abort = threading.Event()
        self._t0 = time.monotonic()
        self._stage_t0: dict[str, float] = {}
        self._last_progress: dict[str, float] = {}

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

    def progress(self, done: int, total: int, unit: str = "items") -> None:
        """A progress line in run.out (at most one every ``progress_interval_s`` per unit, plus the last); also
        the place where a long loop notices an abort request."""
        self.check_abort()
        self._progress_line(done, total, unit)

    @contextlib.contextmanager
    def watch_progress(self, count: Callable[[], int], total: int, unit: str, poll_s: float = 1.0):
        """Progress lines for an engine call that reports nothing itself: a thread polls ``count()`` (e.g. files
        written so far) while the block runs."""
        stop = threading.Event()
        self._stage_t0[unit] = time.monotonic()
        last = [None]

        def report():
            try:
                n = int(count())
            except Exception:  # a folder that does not exist yet
                return
            if n != last[0]:
                self._progress_line(n, total, unit)
                last[0] = n

        def loop():
            while not stop.wait(poll_s):
                report()

        t = threading.Thread(target=loop, name="relion-progress", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join(timeout=5)
            report()  # the final count, also when the work finished between two polls

    @contextlib.contextmanager
    def progress_from_tqdm(self, what: str = "engine"):
        """While the block runs, an engine call's tqdm bars (written to sys.stderr) become progress lines in
        run.out, and other stderr text still reaches run.err; an abort request raises JobAborted at the next
        update of a bar."""
        stream = _TqdmRelay(self, what)
        old, sys.stderr = sys.stderr, stream
        try:
            yield
        finally:
            sys.stderr = old
            stream.flush_rest()

    def _progress_line(self, done: int, total: int, unit: str) -> None:
        now = time.monotonic()
        t0 = self._stage_t0.setdefault(unit, now)
        if done < total and now - self._last_progress.get(unit, -1e9) < self.progress_interval_s:
            return
        self._last_progress[unit] = now
        elapsed = now - t0
        pct = 100.0 * done / total if total else 100.0
        line = f"{unit}: {done}/{total} ({pct:.0f}%), {elapsed:.0f} s"
        if 0 < done < total:
            line += f", about {elapsed / done * (total - done):.0f} s left"
        self.log(line)

    # ---- abort
    @property
    def abort_requested(self) -> bool:
        return self._abort.is_set() or (self.out_dir / ABORT_NOW).exists()

    def check_abort(self) -> None:
        """Raise JobAborted when RELION asked the job to stop (also called by every progress line)."""
        if self.abort_requested:
            self._abort.set()
            raise JobAborted()

    def run_command(self, argv: Sequence[str], *, what: str = "engine", env: dict | None = None) -> None:
        """Run an engine command line (a list, never a shell string) as part of the job.

        Its stdout goes to run.out; its stderr to run.err, except tqdm progress bars, which become progress lines
        in run.out. An abort request stops the command. A non-zero exit raises JobFailed with the command's own
        last error line."""
        argv = [str(a) for a in argv]
        self.log(f"running {what}: {' '.join(argv)}")
        full_env = dict(os.environ)
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        full_env.update(env or {})
        proc = subprocess.Popen(argv, stdout=sys.stdout.fileno() if _has_fileno(sys.stdout) else None,
                                stderr=subprocess.PIPE, env=full_env, start_new_session=False)
        last_error: list[str] = []
        reader = threading.Thread(target=self._relay_stderr, args=(proc.stderr, what, last_error), daemon=True)
        reader.start()
        try:
            while True:
                try:
                    rc = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    self.check_abort()
        except BaseException:
            _stop_process(proc)
            raise
        finally:
            reader.join(timeout=5)
        if rc != 0:
            msg = last_error[-1] if last_error else f"{what} command exited with status {rc}"
            raise JobFailed(msg)

    _TQDM = re.compile(r"(?:(?P<desc>[^:|\r\n]*):\s*)?\s*\d+%\|.*?\|\s*(?P<n>\d+)/(?P<total>\d+)")

    def _relay_stderr(self, stream, what, last_error):
        relay = _TqdmRelay(self, what, in_thread=True)
        while True:
            chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
            if not chunk:
                break
            relay.write(chunk.decode(errors="replace"))
        relay.flush_rest()
        last_error.extend(relay.errors)


class _TqdmRelay:
    """A text stream standing in for stderr that turns tqdm updates into RelionJob progress lines, passes other
    lines on to the real stderr and remembers those that report an error. ``in_thread``: used by a reader thread,
    where an abort request only sets the job's flag (the main thread raises)."""

    def __init__(self, job: RelionJob, what: str, *, in_thread: bool = False):
        self.job, self.what, self.in_thread = job, what, in_thread
        self.buf, self.errors = "", []
        self.target = sys.stderr

    def write(self, text: str) -> int:
        self.buf += text
        while True:
            m = re.search(r"[\r\n]", self.buf)
            if not m:
                break
            piece, self.buf = self.buf[: m.start()], self.buf[m.end():]
            self._piece(piece)
        return len(text)

    def _piece(self, piece: str) -> None:
        if not piece.strip():
            return
        m = RelionJob._TQDM.search(piece)
        if m:
            desc = (m.group("desc") or self.what).strip() or self.what
            try:
                self.job.progress(int(m.group("n")), int(m.group("total")), desc)
            except JobAborted:
                self.job._abort.set()
                if not self.in_thread:
                    raise
            return
        print(piece, file=self.target, flush=True)
        if "error" in piece.lower():
            self.errors.append(re.sub(r"^genem: error: ", "", piece.strip()))

    def flush(self) -> None:
        pass

    def flush_rest(self) -> None:
        rest, self.buf = self.buf, ""
        try:
            self._piece(rest)
        except JobAborted:
            pass

    def isatty(self) -> bool:
        return False

    def fileno(self):
        return self.target.fileno()


def _has_fileno(stream) -> bool:
    try:
        stream.fileno()
        return True
    except Exception:
        return False


def _stop_process(proc, grace_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.normpath(path)).relative_to(Path(os.path.normpath(folder)))
        return True
    except ValueError:
        return False


def write_exit_file(out_dir, name: str) -> None:
    """Leave exactly one exit file: remove the others, then create ``name``."""
    out_dir = Path(out_dir)
    for other in EXIT_FILES:
        if other != name and (out_dir / other).exists():
            (out_dir / other).unlink()
    (out_dir / name).touch()


def _err(spec_name: str, message: str) -> None:
    print(f"{spec_name}: error: {message}", file=sys.stderr, flush=True)


class JobSetupFailed(Exception):
    """Entering :class:`relion_job` failed (bad arguments or inputs); the failure exit file is already written."""

    def __init__(self, job: "RelionJob"):
        super().__init__(job.status)
        self.job = job


class relion_job:  # noqa: N801 - used like a function: ``with relion_job(spec, argv) as job``
    """Own one External job from start to exit file. Use as::

        try:
            with relion_job(spec, argv) as job:
                ...        # map job.inputs / job.params onto the engine; job.add_node(...) the results
        except JobSetupFailed as e:
            job = e.job    # the job never started: bad arguments or inputs (already reported)
        return job.exit_code

    Start (entering): the job folder is created if needed, stale exit and node files from an earlier run are
    removed, the abort watcher starts, the arguments and inputs are parsed and checked; a bad one ends the job as
    a failure (and entering raises JobSetupFailed, so the block does not run). Success: every declared node is
    checked to exist, RELION_OUTPUT_NODES.star is written atomically in the format of the project's RELION, then
    RELION_JOB_EXIT_SUCCESS. Failure (any exception in the block): the traceback for unexpected errors, then one
    line ``<program>: error: <file>: <problem>`` as the last line of run.err, then RELION_JOB_EXIT_FAILURE.
    Abort: a watcher thread sees RELION_JOB_ABORT_NOW and interrupts the main thread (JobAborted), which ends in
    RELION_JOB_EXIT_ABORTED. Exceptions from the block never propagate; ``job.exit_code`` says how it ended."""

    def __init__(self, spec: ProgramSpec, argv: Sequence[str], *, project_dir=".", abort_poll_s: float = 0.5):
        out_dir = peek_output_dir(argv)
        if out_dir is None:
            raise GenemInputError("command line", "--o <job folder> is required (RELION passes --o External/jobNNN/)")
        self.spec = spec
        self.argv = list(argv)
        self.project_dir = project_dir
        self.abort_poll_s = abort_poll_s
        self.job = RelionJob(spec, out_dir, project_dir=project_dir)
        self._in_body = threading.Event()
        self._stop = threading.Event()
        self._old_handlers: dict = {}

    # ---- start
    def __enter__(self) -> RelionJob:
        job = self.job
        job.out_dir.mkdir(parents=True, exist_ok=True)
        for stale in (*EXIT_FILES, NODES_FILE):
            if (job.out_dir / stale).exists():
                (job.out_dir / stale).unlink()
        self._install_abort_watch()
        self._in_body.set()
        try:
            self._start()
        except BaseException as e:  # noqa: BLE001 - a job that cannot start still ends with an exit file
            self.__exit__(type(e), e, e.__traceback__)
            raise JobSetupFailed(job) from None
        return job

    def _start(self) -> None:
        job, spec = self.job, self.spec
        job.relion_version = detect_relion_version(self.project_dir)
        parsed, unknown = parse_arguments(spec, self.argv)
        job.threads = parsed.threads
        job.params = parsed.params
        _check_inputs(spec, parsed.inputs)
        job.inputs = {k: (Path(v) if v else None) for k, v in parsed.inputs.items()}
        job.unknown_arguments = unknown
        import genem

        job.log(f"GenEM {genem.__version__}, RELION {job.relion_version} project, job folder {job.out_dir}, "
                f"{job.threads} thread(s)")
        if unknown:
            job.warn(f"ignoring arguments this program does not know: {' '.join(unknown)}")
        for k, v in parsed.inputs.items():
            if v and k not in spec.inputs:
                job.warn(f"ignoring input --{k} {v}: {spec.name} does not read it")
        job.device = resolve_device(job.params.gpu)
        _set_threads(job.threads)
        job.check_abort()

    # ---- abort
    def _install_abort_watch(self) -> None:
        job = self.job
        is_main = threading.current_thread() is threading.main_thread()
        main_ident = threading.get_ident()

        def on_abort_signal(signum, frame):
            job._abort.set()
            if self._in_body.is_set():
                raise JobAborted()

        def on_term_signal(signum, frame):
            if self._in_body.is_set():
                raise JobTerminated()

        if is_main:
            self._old_handlers[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, on_abort_signal)
            self._old_handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, on_term_signal)

        def watch():
            while not self._stop.wait(self.abort_poll_s):
                if (job.out_dir / ABORT_NOW).exists():
                    job._abort.set()
                    if is_main and self._in_body.is_set():
                        signal.pthread_kill(main_ident, signal.SIGUSR1)
                    return

        threading.Thread(target=watch, name="relion-abort-watcher", daemon=True).start()

    # ---- success, failure, abort
    def __exit__(self, exc_type, exc, tb) -> bool:
        self._in_body.clear()
        job, spec = self.job, self.spec
        status = "failure"
        try:
            if exc is None:
                job.check_abort()
                for name, _ in job.nodes:
                    if not (job.project_dir / name).exists():
                        raise RuntimeError(f"output node {name} was declared but not written")
                write_text_atomic(job.out_dir / NODES_FILE, format_output_nodes(job.nodes, job.relion_version))
                status = "success"
            else:
                raise exc
        except JobAborted:
            status = "aborted"
        except (GenemInputError, JobFailed) as e:
            _err(spec.name, str(e))
        except JobTerminated:
            _err(spec.name, "terminated by SIGTERM")
        except KeyboardInterrupt:
            if job.abort_requested:
                status = "aborted"
            else:
                _err(spec.name, "interrupted")
        except BaseException as e:  # noqa: BLE001 - every failure must end with an exit file
            traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
            first = str(e).splitlines()[0] if str(e) else ""
            _err(spec.name, f"unexpected {type(e).__name__}" + (f": {first}" if first else ""))
        finally:
            self._stop.set()
            for sig, h in self._old_handlers.items():
                signal.signal(sig, h)
            self._old_handlers.clear()
            if status == "aborted":
                job.log("aborted on request (RELION_JOB_ABORT_NOW)")
            elif status == "success":
                job.log(f"finished; output nodes: {', '.join(n for n, _ in job.nodes) or 'none'}")
            sys.stdout.flush()
            sys.stderr.flush()
            job.status = status
            job.exit_code = {"success": RC_SUCCESS, "failure": RC_FAILURE, "aborted": RC_ABORTED}[status]
            write_exit_file(job.out_dir, {"success": EXIT_SUCCESS, "failure": EXIT_FAILURE,
                                          "aborted": EXIT_ABORTED}[status])
        return True


def _check_inputs(spec: ProgramSpec, inputs: dict) -> None:
    for alternatives in spec.required_inputs:
        if not any(inputs.get(k) for k in alternatives):
            names = " or ".join(f"--{k}" for k in alternatives)
            raise GenemInputError("inputs", f"{spec.name} needs {names} (External job, Input tab)")
    for k, v in inputs.items():
        if v and k in spec.inputs and not Path(v).exists():
            raise GenemInputError(v, f"input given as --{k} not found (paths are relative to the project directory)")


def _set_threads(n: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    try:
        import torch

        torch.set_num_threads(n)
    except Exception:  # pragma: no cover - torch is a dependency; threads are a hint
        pass


# --------------------------------------------------------------------------------------------------- entry point
def run_program(spec: ProgramSpec, body: Callable[[RelionJob], None], argv: Sequence[str] | None = None, *,
                supervise: bool | None = None) -> int:
    """A program's ``main``: ``--help``; otherwise a supervisor process that runs the job in a worker and
    guarantees an exit file even if the worker dies abruptly. ``supervise=False`` runs the job in this process."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(spec.help_text())
        return 0
    out_dir = peek_output_dir(argv)
    if out_dir is None:
        _err(spec.name, "--o <job folder> is required (RELION passes --o External/jobNNN/); see --help")
        return RC_FAILURE
    if supervise is None:
        supervise = os.environ.get(_WORKER_ENV) != "1"
    if not supervise:
        try:
            with relion_job(spec, argv) as job:
                body(job)
        except JobSetupFailed as e:
            job = e.job
        return job.exit_code
    return _supervise(spec, argv, Path(out_dir))


def _supervise(spec: ProgramSpec, argv: list[str], out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in EXIT_FILES:
        if (out_dir / stale).exists():
            (out_dir / stale).unlink()
    from genem.cli.main import PROCESS_ENV

    env = {**PROCESS_ENV, **os.environ}  # the CLI's process-wide settings (torch is imported in the worker)
    env[_WORKER_ENV] = "1"
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
    grace = float(os.environ.get(_ABORT_GRACE_ENV, "60"))
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
        return {EXIT_SUCCESS: RC_SUCCESS, EXIT_FAILURE: RC_FAILURE, EXIT_ABORTED: RC_ABORTED}[present[0]]
    if (out_dir / ABORT_NOW).exists():
        write_exit_file(out_dir, EXIT_ABORTED)
        print(f"{spec.name}: aborted on request (RELION_JOB_ABORT_NOW)", flush=True)
        return RC_ABORTED
    how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
    _err(spec.name, f"the worker process {how} before finishing (out of memory?); see the messages above")
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
