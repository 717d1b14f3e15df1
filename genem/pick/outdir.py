"""Output folders of the picking commands: a new or empty folder, or one this same command wrote before."""
from __future__ import annotations

from pathlib import Path

from genem.io import GenemInputError
from genem.io.atomic import TMP_MARK


def claim_out_dir(out_dir, own_names, marker: str, what: str) -> Path:
    """Return ``out_dir`` (created) when it is new, empty, or holds only ``own_names`` (and temporaries); a folder
    with anything else is refused before anything is written (``marker`` names the file that makes it ours)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GenemInputError(out, "exists and is not a folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in own_names and TMP_MARK not in p.name)
        if foreign:
            raise GenemInputError(out, f"not empty and not {what} output ({foreign[0]} ...; no {marker}): "
                                       "choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    return out
