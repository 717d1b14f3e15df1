"""``genem`` command line. Each capability is a module ``genem/cli/<name>.py`` with ``add_parser(subparsers)``;
``evaluate`` gathers ``genem/cli/evaluate_<what>.py`` modules, each with ``add_parser(evaluate_subparsers)``.
Parsers set ``func`` (called with the parsed args; returns an exit code or None)."""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import sys

# Process-wide settings, made before torch is imported. Idle OpenMP threads that spin steal the core their sibling
# needs on small shared machines: measured 3x slower with 2 torch threads on 2 busy cores (benchmarks/simulate.py).
# The user's environment wins. The RELION programs give these to their worker process too.
PROCESS_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
os.environ.update({k: v for k, v in PROCESS_ENV.items() if k not in os.environ})

from genem.io.errors import GenemInputError  # noqa: E402

COMMANDS = ("simulate", "translate", "denoise", "pick")

#: a value that starts like a negative number and goes on as a range: ``-20000,-5000`` or ``-10:-5``
NEGATIVE_RANGE = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?[,:]")
#: what a flag left out means when its default is ``None`` and its help does not say (by destination)
NONE_MEANS = {"threads": "torch's choice, all cores", "max_micrographs": "all", "pixel_size_A": "from the input",
              "real_pixel_size_A": "from the headers", "init": "random weights"}


class ArgumentParser(argparse.ArgumentParser):
    """argparse that takes a negative range as a flag's value (``--defocus-A -20000,-5000`` as if written with
    ``=``): argparse alone reads it as an unknown option."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        glued = []
        for a in args:
            prev = glued[-1] if glued else ""
            if NEGATIVE_RANGE.match(a) and prev.startswith("--") and "=" not in prev:
                glued[-1] = f"{prev}={a}"
            else:
                glued.append(a)
        return super().parse_known_args(glued, namespace)


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every flag that takes a value and whose help gives no default gets one: argparse's default with the unit
    its name carries, or what leaving it out means (:data:`NONE_MEANS`); subcommands too."""
    from .defaults import unit_of, with_default

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _show_defaults(sub)
            continue
        if not action.option_strings or action.nargs == 0 or action.required or action.help == argparse.SUPPRESS:
            continue
        text = action.help or ""
        if "(default" in text:
            continue
        if action.default is not None:
            action.help = with_default(text, action.default, unit_of(action.dest))
        else:
            action.help = f"{text} (default: {NONE_MEANS.get(action.dest, 'none')})".lstrip()


def build_parser() -> argparse.ArgumentParser:
    import genem

    parser = ArgumentParser(prog="genem", description="Physics-informed generative cryo-EM")
    parser.add_argument("--version", action="version", version=f"genem {genem.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"genem.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"genem.cli.{name}":
                continue
            raise
        mod.add_parser(sub)
    import genem.cli as pkg

    evaluators = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("evaluate_"))
    if evaluators:
        ev = sub.add_parser("evaluate", help="measure realism, restoration or picking quality")
        evsub = ev.add_subparsers(dest="what", required=True)
        for m in evaluators:
            importlib.import_module(f"genem.cli.{m}").add_parser(evsub)
    _show_defaults(parser)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except GenemInputError as e:
        print(f"genem: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genem: interrupted; partial outputs are temporary files and will be cleaned on the next run",
              file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
