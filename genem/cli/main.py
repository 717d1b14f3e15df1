"""``genem`` command line. Each capability is a module ``genem/cli/<name>.py`` with ``add_parser(subparsers)``;
``evaluate`` gathers ``genem/cli/evaluate_<what>.py`` modules, each with ``add_parser(evaluate_subparsers)``.
Parsers set ``func`` (called with the parsed args; returns an exit code or None)."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from genem.io.errors import GenemInputError

COMMANDS = ("simulate", "translate", "denoise", "pick")


def build_parser() -> argparse.ArgumentParser:
    import genem

    parser = argparse.ArgumentParser(prog="genem", description="Physics-informed generative cryo-EM")
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
