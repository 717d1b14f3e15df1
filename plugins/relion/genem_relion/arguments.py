"""The argument spec of a GenEM RELION program: its user parameters (:class:`Param`), what it declares
(:class:`ProgramSpec`), and the parsing of the command line RELION passes (empty values, control arguments)."""
from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

from genem.io.errors import GenemInputError

#: RELION ``--in_*`` arguments (as on the command line) and the External-job GUI field that fills each.
INPUT_ARGUMENTS = {
    "in_movies": "in_mov",
    "in_mics": "in_mic",
    "in_parts": "in_part",
    "in_coords": "in_coords",
    "in_3dref": "in_3dref",
    "in_mask": "in_mask",
}

#: Arguments RELION adds on its own (ignored without a warning); each takes one value.
RELION_CONTROL_ARGUMENTS = ("--pipeline_control", "--pipeline-control")

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


def check_inputs(spec: ProgramSpec, inputs: dict) -> None:
    for alternatives in spec.required_inputs:
        if not any(inputs.get(k) for k in alternatives):
            names = " or ".join(f"--{k}" for k in alternatives)
            raise GenemInputError("inputs", f"{spec.name} needs {names} (External job, Input tab)")
    for k, v in inputs.items():
        if v and k in spec.inputs and not Path(v).exists():
            raise GenemInputError(v, f"input given as --{k} not found (paths are relative to the project directory)")
