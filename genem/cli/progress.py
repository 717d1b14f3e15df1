"""The one progress flag of every ``genem`` command, and the renderer it selects.

``--progress bar`` draws tqdm bars on stderr (the default on a terminal); ``--progress lines`` writes plain lines
(:func:`genem.progress.format_event`) on stderr (the default otherwise, and what platform adapters ask for when they
run the CLI as a subprocess: the lines land in their job logs); ``--progress none`` is silent. ``--no-progress``
and ``--quiet`` are kept, hidden, as spellings of ``--progress none``."""
from __future__ import annotations

import argparse
import sys

from genem.progress import LineProgress, ProgressCallback, TqdmProgress

PROGRESS_MODES = ("bar", "lines", "none")


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", choices=PROGRESS_MODES, default=None,
                        help="how to show progress: bar (tqdm bars on stderr), lines (plain lines on stderr, for "
                             "logs) or none (default: bar on a terminal, lines otherwise)")
    parser.add_argument("--no-progress", "--quiet", dest="progress", action="store_const", const="none",
                        help=argparse.SUPPRESS)


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def progress_from_args(args) -> ProgressCallback | None:
    """The callback the engine functions get for the parsed ``--progress``."""
    mode = args.progress or ("bar" if sys.stderr.isatty() else "lines")
    if mode == "bar":
        return TqdmProgress()
    if mode == "lines":
        return LineProgress(_stderr_line)
    return None
