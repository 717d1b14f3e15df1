"""Progress reporting: how long-running engine functions tell their caller how far they are.

Engine functions (simulate, translate train/apply, denoise train/apply, pick) take ``progress``: a callable that
receives :class:`ProgressEvent` objects, or ``None`` for silence. They never print, draw bars or write log files
themselves; the front end decides how progress is shown:

* the CLI renders events as tqdm bars on stderr (:class:`TqdmProgress`);
* the RELION programs write lines to ``run.out``, Scipion protocols to their log and cryoSPARC jobs to the job's
  event log, all through :class:`LineProgress` (or their own callable).

A callback may raise (for example when the user aborted a RELION job); the exception travels out of the engine
function, which leaves its outputs resumable as after any interruption.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

__all__ = ["ProgressEvent", "ProgressCallback", "report", "TqdmProgress", "LineProgress", "format_event"]


@dataclass(frozen=True)
class ProgressEvent:
    """One step of one task. ``done`` counts finished ``unit``s out of ``total`` (``None`` when unknown);
    ``info`` carries small numbers worth showing (e.g. ``{"loss": 0.12}``)."""

    task: str
    done: int
    total: Optional[int]
    unit: str = "it"
    info: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.total is not None and self.done >= self.total


ProgressCallback = Callable[[ProgressEvent], None]


def report(progress: ProgressCallback | None, task: str, done: int, total: int | None, unit: str = "it",
           **info) -> None:
    """Send one event to ``progress`` (nothing when it is ``None``; ``False``, the switch of earlier versions, is
    taken as ``None``)."""
    if progress is None or progress is False:
        return
    if not callable(progress):
        raise TypeError(f"progress must be a callable taking a ProgressEvent (e.g. genem.progress.TqdmProgress()) "
                        f"or None, not {progress!r}")
    progress(ProgressEvent(task, int(done), None if total is None else int(total), unit, dict(info)))


def format_event(ev: ProgressEvent, elapsed_s: float | None = None, left_s: float | None = None) -> str:
    """``task: 3/10 mic (30%), 12 s, about 28 s left loss=0.12``: the one line format used in logs (run.out,
    Scipion, cryoSPARC). The times are added when given; an event with an empty ``unit`` shows none."""
    unit = f" {ev.unit}" if ev.unit else ""
    if ev.total:
        s = f"{ev.task}: {ev.done}/{ev.total}{unit} ({100.0 * ev.done / ev.total:.0f}%)"
    else:
        s = f"{ev.task}: {ev.done}{unit}"
    if elapsed_s is not None:
        s += f", {elapsed_s:.0f} s"
    if left_s is not None:
        s += f", about {left_s:.0f} s left"
    if ev.info:
        s += " " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in ev.info.items())
    return s


class LineProgress:
    """Writes events as plain lines (see :func:`format_event`) to ``write`` (default: stdout), at most one line per
    task every ``interval_s`` seconds, plus the first and the last of each task, with the time since the task's
    first event and an estimate of the time left. A finished task's name may be used again. Suits log files."""

    def __init__(self, write: Callable[[str], None] | None = None, interval_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self._write = write or (lambda line: (sys.stdout.write(line + "\n"), sys.stdout.flush()))
        self.interval_s = float(interval_s)
        self._clock = clock
        self._last: dict[str, float] = {}
        self._first: dict[str, tuple[float, int]] = {}

    def __call__(self, ev: ProgressEvent) -> None:
        now = self._clock()
        t0, done0 = self._first.setdefault(ev.task, (now, ev.done))
        last = self._last.get(ev.task)
        if last is not None and not ev.finished and now - last < self.interval_s:
            return
        self._last[ev.task] = now
        elapsed = now - t0
        left = None
        if ev.total and done0 < ev.done < ev.total:
            left = elapsed / (ev.done - done0) * (ev.total - ev.done)
        if ev.finished:  # a task of the same name may run again: it starts afresh
            del self._first[ev.task], self._last[ev.task]
        self._write(format_event(ev, elapsed, left))


class TqdmProgress:
    """Renders events as one tqdm bar per task on stderr (the CLI's renderer). Use as a context manager, or call
    :meth:`close` at the end, so bars are closed on errors too. ``enabled=False`` makes it silent."""

    def __init__(self, enabled: bool = True, file=None):
        self.enabled = enabled
        self.file = file if file is not None else sys.stderr
        self._bars: dict = {}

    def __call__(self, ev: ProgressEvent) -> None:
        if not self.enabled:
            return
        bar = self._bars.get(ev.task)
        if bar is None or (ev.total is not None and bar.total != ev.total):
            if bar is not None:
                bar.close()
            from tqdm import tqdm

            bar = tqdm(total=ev.total, initial=ev.done, desc=ev.task, unit=ev.unit, file=self.file,
                       dynamic_ncols=True, mininterval=1)
            self._bars[ev.task] = bar
        if ev.done != bar.n:
            bar.update(ev.done - bar.n)
        if ev.info:
            bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in ev.info.items()},
                            refresh=False)
        if ev.finished:
            bar.close()
            del self._bars[ev.task]

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
