"""Output folders and files, checked before any work: one rule for every command that writes.

A command's output folder (``--out``) is accepted when it is new, empty, or holds a mark of this same command's
earlier run (finished or not), which the command may then resume or refuse by its own rules. Anything else (a
user's project folder, another command's output) is refused with one line, before anything is read or written.
The mark is :data:`OUTPUT_MARK`, a small file naming the command, written when the folder is claimed; commands also
name their own records (``markers``) so that folders written before the mark existed are still recognised.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from .atomic import TMP_MARK, write_text_atomic
from .errors import GenemInputError

#: the file that says which command claimed a folder (its text: the command, e.g. ``genem simulate``)
OUTPUT_MARK = ".genem-output"


def _problem(e: OSError) -> str:
    return os.strerror(e.errno) if e.errno else str(e)


def _writable_folder(folder: Path) -> None:
    """Refuse ``folder`` (an existing folder) when files cannot be created in it."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GenemInputError(folder, "folder not writable (permission denied)")


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise GenemInputError(folder, "exists and is not a folder") from None
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            raise GenemInputError(folder, "cannot create the folder (a parent is a file)") from None
        raise GenemInputError(folder, f"cannot create the folder ({_problem(e)})") from None


def _claimed_by(out: Path) -> str | None:
    try:
        return (out / OUTPUT_MARK).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def check_out_dir(out_dir, command: str, *, markers=(), own_names=()) -> Path:
    """Check ``out_dir`` without writing anything; raise :class:`GenemInputError` when ``command`` may not write
    there (see :func:`claim_out_dir`). Call it first; claim the folder once the inputs are checked."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GenemInputError(out, "exists and is not a folder")
    if not out.is_dir():
        _creatable(out)
        return out
    entries = sorted(p.name for p in out.iterdir() if TMP_MARK not in p.name)
    claimed = _claimed_by(out)
    if claimed is not None and claimed != command:
        raise GenemInputError(out, f"holds the output of '{claimed}', not of '{command}': choose a new --out")
    ours = claimed == command or any((out / m).exists() for m in markers)
    if entries and not ours and not all(e in own_names for e in entries):
        foreign = next(e for e in entries if e not in own_names)
        raise GenemInputError(out, f"not empty and not the output of an earlier '{command}' (holds {foreign}): "
                                   "choose a new or empty --out")
    _writable_folder(out)
    return out


def _creatable(folder: Path) -> None:
    """Refuse a new ``folder`` whose nearest existing ancestor is a file or is not writable."""
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise GenemInputError(folder, f"cannot create the folder ({parent} is a file)")
    _writable_folder(parent)


def claim_out_dir(out_dir, command: str, *, markers=(), own_names=()) -> Path:
    """Return ``out_dir``, created and marked as ``command``'s output, or raise :class:`GenemInputError`.

    Accepted: a new folder, an empty one (temporaries of an interrupted write do not count), one whose
    :data:`OUTPUT_MARK` names ``command``, one holding any of ``markers`` (paths of ``command``'s own records,
    relative to the folder), or one holding nothing but ``own_names`` (e.g. the records folder an interrupted run
    made before its mark). Refused: a file, an unwritable folder, anything else that is not empty."""
    out = check_out_dir(out_dir, command, markers=markers, own_names=own_names)
    _make_folder(out)
    if _claimed_by(out) != command:
        try:
            write_text_atomic(out / OUTPUT_MARK, command + "\n")
        except OSError as e:
            raise GenemInputError(out, f"cannot write in the folder ({_problem(e)})") from None
    return out


def check_out_file(path, *, flag: str = "--out") -> Path:
    """Check, writing nothing, that a file can be written at ``path`` (a new file, or one replacing an existing
    file; its folder is made when the file is written). Refused: an existing folder, a parent that is a file, an
    unwritable folder."""
    path = Path(path)
    if path.is_dir():
        raise GenemInputError(path, f"is a folder; {flag} names a file to write")
    if path.parent.is_dir():
        _writable_folder(path.parent)
    else:
        _creatable(path.parent)
    if path.exists() and not os.access(path, os.W_OK):
        raise GenemInputError(path, "file not writable (permission denied)")
    return path
