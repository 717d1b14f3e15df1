"""genem.progress (the engine's progress events and their renderers) and the CLI's one progress flag."""
from __future__ import annotations

import argparse
import io

import pytest

from genem.cli.progress import add_progress_flag, progress_from_args
from genem.progress import LineProgress, TqdmProgress, report


def test_line_progress_rate_limits_and_estimates_time_left():
    now = [0.0]
    lines: list[str] = []
    lp = LineProgress(lines.append, interval_s=2.0, clock=lambda: now[0])
    for i in range(11):
        report(lp, "simulate", i, 10, "mic", loss=0.5)
        now[0] += 0.5
    # the first event, one every 2 s, and the last
    assert lines[0] == "simulate: 0/10 mic (0%), 0 s loss=0.5"
    assert lines[1] == "simulate: 4/10 mic (40%), 2 s, about 3 s left loss=0.5"
    assert lines[-1] == "simulate: 10/10 mic (100%), 5 s loss=0.5"
    assert len(lines) == 4
    report(lp, "simulate", 1, 2, "")  # a finished task's name starts afresh; no unit shown when empty
    assert lines[-1] == "simulate: 1/2 (50%), 0 s"


def test_report_to_none_is_silent_and_tqdm_closes_finished_bars():
    report(None, "x", 1, 2)
    f = io.StringIO()
    with TqdmProgress(file=f) as bar:
        report(bar, "denoise", 0, 3, "ptcl")
        report(bar, "denoise", 3, 3, "ptcl")
        assert bar._bars == {}
    assert "denoise" in f.getvalue() and "3/3" in f.getvalue()


@pytest.mark.parametrize("argv, mode", [([], None), (["--progress", "lines"], "lines"), (["--no-progress"], "none"),
                                        (["--quiet"], "none"), (["--progress", "bar"], "bar")])
def test_one_progress_flag_with_old_spellings(argv, mode):
    p = argparse.ArgumentParser()
    add_progress_flag(p)
    args = p.parse_args(argv)
    assert args.progress == mode
    cb = progress_from_args(args)
    if mode == "none":
        assert cb is None
    elif mode == "lines" or (mode is None and not __import__("sys").stderr.isatty()):
        assert isinstance(cb, LineProgress)
    else:
        assert isinstance(cb, TqdmProgress)
    assert "--no-progress" not in p.format_help() and "--progress" in p.format_help()


def test_report_takes_none_or_false_as_silence_and_refuses_other_non_callables():
    from genem.progress import report

    report(None, "t", 1, 2)
    report(False, "t", 1, 2)  # the boolean switch of earlier versions
    with pytest.raises(TypeError, match="callable"):
        report(True, "t", 1, 2)
    seen = []
    report(seen.append, "t", 1, 2, "mic", loss=0.5)
    assert seen[0].task == "t" and seen[0].done == 1 and seen[0].total == 2 and seen[0].info == {"loss": 0.5}
