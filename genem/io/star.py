"""STAR reading and writing (RELION 3.1+ layout) on top of ``starfile``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
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
        detail = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise GenemInputError(path, f"not a readable STAR file: {detail}") from None
    out = {}
    for k, v in blocks.items():
        if isinstance(v, dict):
            v = pd.DataFrame([v])
        out[k] = v
    if not out:
        raise GenemInputError(path, "STAR file has no data blocks")
    for k, v in out.items():
        check_star_values(path, k, v)
    return out


_NON_FINITE = {"nan", "-nan", "+nan", "inf", "-inf", "+inf"}


def _numeric(values: pd.Series) -> np.ndarray:
    """Which values are numbers, RELION's non-finite spellings (nan, -nan, inf, -inf) included."""
    text = values.astype(str).str.strip().str.lower()
    return (pd.to_numeric(values, errors="coerce").notna() | text.isin(_NON_FINITE)).to_numpy()


def check_star_values(path, block: str, rows: pd.DataFrame) -> None:
    """A row cut short (a file truncated while written, an empty value) or a non-numeric value in a numeric
    column is a GenemInputError naming the block, row (1-based) and column. Columns named ``...Name`` hold text.
    A numeric column read as text (RELION writes nan / -nan / inf, e.g. an empty class's completeness) is turned
    into numbers in place."""
    twice = rows.columns[rows.columns.duplicated()]
    if len(twice):
        raise GenemInputError(path, f"data_{block}: column {twice[0]} appears more than once")
    missing = rows.isna().to_numpy()
    if missing.any():
        r, c = (int(i) for i in np.argwhere(missing)[0])
        col = rows.columns[c]
        if r == len(rows) - 1 and missing[r, c:].all():
            raise GenemInputError(path, f"truncated: data_{block} row {r + 1} ends before column {col} "
                                        "(file cut off while being written?)")
        raise GenemInputError(path, f"data_{block} row {r + 1}, column {col}: no value")
    for col in rows.columns:
        values = rows[col]
        if pd.api.types.is_numeric_dtype(values) or str(col).endswith("Name"):
            continue
        numeric = _numeric(values)
        if numeric.any() and not numeric.all():
            r = int(np.argmin(numeric))
            raise GenemInputError(path, f"data_{block} row {r + 1}, column {col}: {values.iloc[r]!r} is not a number")
        if numeric.all():
            rows[col] = pd.to_numeric(values.astype(str).str.strip().str.lower(), errors="coerce")


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


#: where RELION keeps the pixel size of particle images and of micrographs (first found wins)
IMAGE_PIXEL_SIZE_COLUMNS = ("rlnImagePixelSize", "rlnPixelSize")
MICROGRAPH_PIXEL_SIZE_COLUMNS = ("rlnMicrographPixelSize",)


def numeric_column(table: pd.DataFrame, column: str, source="STAR file", *, integer: bool = False,
                   missing_ok: bool = False) -> np.ndarray:
    """``table[column]`` as float64 (``integer``: whole numbers); a value that is not a finite number (text, a blank
    of a cut-off row, infinity; NaN unless ``missing_ok``) is a GenemInputError naming the row and the column."""
    values = table[column]
    out = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    given_nan = (values.isna() | (values.astype(str).str.strip().str.lower() == "nan")).to_numpy()
    bad = ~np.isfinite(out) & ~(missing_ok & given_nan)
    if integer:
        bad |= np.isfinite(out) & (out != np.round(out))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        kind = "a whole number" if integer else "a number"
        raise GenemInputError(source, f"row {i + 1}, {column}: {values.iloc[i]!r} is not {kind}")
    return out


def star_pixel_sizes_A(optics: pd.DataFrame | None, rows: pd.DataFrame,
                       columns=IMAGE_PIXEL_SIZE_COLUMNS, source="STAR file") -> np.ndarray:
    """Pixel size (A) of each row: from the row's own column, else its optics group's (a table without
    rlnOpticsGroup takes the first optics group's), else RELION 3.0's rlnDetectorPixelSize (um) and
    rlnMagnification; NaN where none says. A value that is not a number is a GenemInputError naming ``source``."""
    n = len(rows)
    for col in columns:
        if col in rows.columns:
            return numeric_column(rows, col, source, missing_ok=True)
    if optics is not None and len(optics):
        for col in columns:
            if col not in optics.columns:
                continue
            sizes = numeric_column(optics, col, f"{source} (optics)", missing_ok=True)
            if "rlnOpticsGroup" not in rows.columns:
                return np.full(n, sizes[0])
            if "rlnOpticsGroup" not in optics.columns:
                raise GenemInputError(source, "rows name an rlnOpticsGroup but the optics block has no "
                                              "rlnOpticsGroup column")
            lut = dict(zip(numeric_column(optics, "rlnOpticsGroup", f"{source} (optics)", integer=True), sizes))
            return np.array([lut.get(g, np.nan) for g in numeric_column(rows, "rlnOpticsGroup", source,
                                                                        integer=True)], dtype=np.float64)
    if "rlnDetectorPixelSize" in rows.columns and "rlnMagnification" in rows.columns:
        return (numeric_column(rows, "rlnDetectorPixelSize", source, missing_ok=True) * 1e4
                / numeric_column(rows, "rlnMagnification", source, missing_ok=True))
    return np.full(n, np.nan)


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
