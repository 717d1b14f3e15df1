"""STAR reading and writing (RELION 3.1+ layout) on top of ``starfile``."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import starfile

from .atomic import atomic_path
from .errors import GenemInputError


def read_star(path) -> dict[str, pd.DataFrame]:
    """Return every data block as a DataFrame, keyed by block name (``optics``, ``particles``, ...)."""
    path = Path(path)
    if not path.exists():
        raise GenemInputError(path, "STAR file not found")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as e:
        raise GenemInputError(path, f"not a readable STAR file ({type(e).__name__})") from None
    out = {}
    for k, v in blocks.items():
        if isinstance(v, dict):
            v = pd.DataFrame([v])
        out[k] = v
    if not out:
        raise GenemInputError(path, "STAR file has no data blocks")
    return out


def read_particles_star(path) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """Return ``(optics or None, particles)`` from a RELION particles STAR (3.0 or 3.1+ layout)."""
    blocks = read_star(path)
    optics = blocks.get("optics")
    parts = blocks.get("particles")
    if parts is None:
        others = [k for k in blocks if k != "optics"]
        if not others:
            raise GenemInputError(path, "no particles block")
        parts = blocks[others[0]]
    return optics, parts


def merge_optics(optics: pd.DataFrame | None, rows: pd.DataFrame) -> pd.DataFrame:
    """Copy each row's optics-group values (voltage, Cs, Q0, pixel size...) onto the rows."""
    if optics is None or "rlnOpticsGroup" not in rows.columns:
        return rows.copy()
    extra = [c for c in optics.columns if c not in rows.columns or c == "rlnOpticsGroup"]
    return rows.merge(optics[extra], on="rlnOpticsGroup", how="left")


def write_star(path, blocks: dict[str, pd.DataFrame]) -> None:
    """Write blocks atomically, without starfile's timestamp line, so equal data gives byte-equal files."""
    with atomic_path(path) as tmp:
        starfile.write(blocks, tmp, overwrite=True)
        text = Path(tmp).read_text()
        if text.startswith("# Created by the starfile"):
            Path(tmp).write_text(text.split("\n", 1)[1].lstrip("\n"))


def split_image_name(name: str) -> tuple[int, str]:
    """``'000012@Particles/a.mrcs'`` -> ``(11, 'Particles/a.mrcs')`` (0-based index)."""
    if "@" in name:
        i, p = name.split("@", 1)
        return int(i) - 1, p
    return 0, name


def join_image_name(index0: int, path: str) -> str:
    return f"{index0 + 1:06d}@{path}"
