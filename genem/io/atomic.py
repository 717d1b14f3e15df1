"""Atomic file writing: write to a temporary file beside the target, then rename.

A reader never sees a half-written file under the final name, and an interrupted job leaves only
``*.tmp-*`` files, which are ignored and cleaned on the next run.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

TMP_MARK = ".tmp-"


def _process_umask() -> int:
    """The process's umask (read without changing it where /proc allows; else set and restore at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ordinary_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0o666 less the umask (``mkstemp`` gives 0o600)."""
    return 0o666 & ~_process_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds. The file gets
    the mode of an ordinary new file (the umask applies), not ``mkstemp``'s 0600, so group members and service
    users (a cryoSPARC instance) can read results."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + TMP_MARK, dir=path.parent, suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, ordinary_file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json_atomic(path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def remove_stale_temporaries(folder) -> int:
    """Delete temporaries that an interrupted run left behind; return how many."""
    n = 0
    for p in Path(folder).rglob(f"*{TMP_MARK}*"):
        if p.is_file():
            p.unlink()
            n += 1
    return n
