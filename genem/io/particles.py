"""Particle sets (RELION STAR, cryoSPARC ``.cs``, a bare ``.mrcs`` stack) and micrograph tables: reading them with
their image files resolved and checked and their pixel sizes, and writing the table back with new image names and
every other column kept.

Paths follow RELION's rule: image names in a table are relative to a root folder, the project directory (given,
or found as the table's folder or the nearest parent folder, or the current folder, under which every named
file exists). Pixel sizes: a STAR file's (:func:`genem.io.star.star_pixel_sizes_A`), a ``.cs`` file's
``blob`` slot, or an MRC header's (:func:`genem.io.mrc.header_pixel_size_A`: 1.0 A/px means unknown); an explicit
``pixel_size_A`` overrides all of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import GenemInputError
from .mrc import header_pixel_size_A, read_stack_images, read_stack_shape
from .star import (
    MICROGRAPH_PIXEL_SIZE_COLUMNS, join_image_name, merge_optics, read_particles_star, read_star, split_image_name,
    star_pixel_sizes_A, write_star,
)

@dataclass
class ParticleSet:
    """Rows of a particle table, resolved to (stack file, 0-based index) each, with pixel sizes."""

    kind: str                  # "star" | "cs" | "mrcs"
    path: Path                 # the input file
    root: Path                 # image paths in the table are relative to this folder
    stacks: list               # absolute stack paths
    stack_of_row: np.ndarray   # (n,) index into stacks
    index_of_row: np.ndarray   # (n,) 0-based image index within its stack
    pixel_size_A: np.ndarray   # (n,)
    box_px: int
    table: object = None       # DataFrame blocks (star) or cryosparc Dataset (cs)

    def rows_of_stack(self, k: int) -> np.ndarray:
        """Row numbers (in table order) of the images in stack ``k``."""
        return np.nonzero(self.stack_of_row == k)[0]

    def stack_pixel_size_A(self, k: int) -> float:
        """The pixel size of stack ``k``; its rows must agree."""
        px = self.pixel_size_A[self.stack_of_row == k]
        if np.ptp(px) > 1e-3 * px.max():
            raise GenemInputError(self.stacks[k], "rows of one stack have different pixel sizes")
        return float(px[0])

    def read_images(self, k: int, rows: np.ndarray) -> np.ndarray:
        """Images (len(rows), box, box) of the given rows of stack ``k``."""
        return read_stack_images(self.stacks[k], self.index_of_row[rows])


# ------------------------------------------------------------------------------------------------ paths
def resolve_root(rel_paths: list, input_path, root=None) -> Path:
    """The folder every path in ``rel_paths`` exists under: ``root`` if given, else the folder of ``input_path``,
    one of its parents, or the current folder (the first that holds the first 50 files)."""
    input_path = Path(input_path)
    uniq = list(dict.fromkeys(rel_paths))
    probe = uniq[:50]
    if root is not None:
        found = Path(root)
    else:
        cands = [input_path.parent.resolve(), *input_path.parent.resolve().parents, Path.cwd()]
        found = next((c for c in cands if all((c / p).exists() for p in probe)), None)
        if found is None:
            raise GenemInputError(input_path, f"image stack {probe[0]} not found relative to the file or its parent "
                                              "folders (give --root)")
    missing = [p for p in uniq if not (found / p).exists()]
    if missing:
        raise GenemInputError(found / missing[0], "image stack not found")
    return found


def image_files(rows: pd.DataFrame, column: str = "rlnImageName") -> list[str]:
    """The distinct image files a particle table names (``INDEX@PATH`` -> ``PATH``), in first-seen order."""
    return list(dict.fromkeys(split_image_name(str(s))[1] for s in rows[column]))


def _check_stacks(stacks, stack_of_row, index_of_row, source) -> int:
    boxes = {}
    for k, s in enumerate(stacks):
        (n, h, w), _ = read_stack_shape(s)
        if h != w:
            raise GenemInputError(s, f"images are not square ({h}x{w})")
        idx = index_of_row[stack_of_row == k]
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = int(idx.max() if idx.max() >= n else idx.min())
            raise GenemInputError(source, f"image index {bad + 1} out of range for {s} ({n} images)")
        boxes.setdefault(h, s)
    if len(boxes) > 1:
        (b1, s1), (b2, s2) = list(boxes.items())[:2]
        raise GenemInputError(source, f"box sizes differ: {b1} px ({s1.name}) and {b2} px ({s2.name})")
    return next(iter(boxes)) if boxes else 0


def _table_key(blocks: dict, kind: str) -> str | None:
    return kind if kind in blocks else next((k for k in blocks if k != "optics"), None)


# ------------------------------------------------------------------------------------------------ particle sets
def read_particle_set(path, *, root=None, pixel_size_A: float | None = None) -> ParticleSet:
    """Read and check a particle set; raises GenemInputError with a one-line message on bad input."""
    path = Path(path)
    if not path.exists():
        raise GenemInputError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix == ".star":
        blocks = read_star(path)
        key = _table_key(blocks, "particles")
        if key is None:
            raise GenemInputError(path, "no particles block")
        rows = blocks[key]
        if "rlnImageName" not in rows.columns:
            raise GenemInputError(path, "no rlnImageName column (no particle images named)")
        try:
            names = [split_image_name(str(n)) for n in rows["rlnImageName"]]
        except ValueError:
            raise GenemInputError(path, "malformed rlnImageName (expected INDEX@PATH)") from None
        rel = [p for _, p in names]
        index = np.array([i for i, _ in names], dtype=np.int64)
        px = np.full(len(rows), float(pixel_size_A)) if pixel_size_A is not None else \
            star_pixel_sizes_A(blocks.get("optics"), rows, source=path)
        base = resolve_root(rel, path, root)
        table = blocks
    elif suffix == ".cs":
        from .cs import blob_images, read_cs

        table = read_cs(path)
        rel, index, px = blob_images(table, path, pixel_size_A)
        base = resolve_root(rel, path, root)
    elif suffix in (".mrcs", ".mrc"):
        (n, _, _), vs = read_stack_shape(path)
        p = pixel_size_A if pixel_size_A is not None else header_pixel_size_A(vs)
        if p is None:
            raise GenemInputError(path, "no pixel size in the header; give --pixel-size-A")
        rel, index, px, base, table = [path.name] * n, np.arange(n), np.full(n, float(p)), path.parent.resolve(), None
    else:
        raise GenemInputError(path, "unsupported particle file (expected .star, .cs or .mrcs)")
    if len(index) == 0:
        raise GenemInputError(path, "no particles")
    if not np.all(np.isfinite(px)) or np.any(px <= 0):
        raise GenemInputError(path, _pixel_size_problem(px, table if suffix == ".star" else None))
    uniq = list(dict.fromkeys(rel))
    pos = {p: k for k, p in enumerate(uniq)}
    stack_of_row = np.array([pos[p] for p in rel], dtype=np.int64)
    stacks = [(base / p) for p in uniq]
    box = _check_stacks(stacks, stack_of_row, index, path)
    kind = {".star": "star", ".cs": "cs"}.get(suffix, "mrcs")
    return ParticleSet(kind, path, base, stacks, stack_of_row, index, px, box, table)


def _pixel_size_problem(px: np.ndarray, blocks: dict | None) -> str:
    """Which row lacks a valid pixel size, and why (an optics group the optics block does not list)."""
    if not np.isfinite(px).any():
        return "no pixel size given (give --pixel-size-A)"
    r = int(np.argmin(np.isfinite(px) & (px > 0)))
    rows = blocks[_table_key(blocks, "particles")] if blocks else None
    optics = blocks.get("optics") if blocks else None
    if rows is not None and optics is not None and "rlnOpticsGroup" in rows.columns \
            and "rlnOpticsGroup" in optics.columns:
        g = rows["rlnOpticsGroup"].iloc[r]
        if g not in set(optics["rlnOpticsGroup"]):
            return f"row {r + 1}: optics group {g} is not in data_optics (no pixel size; give --pixel-size-A)"
    return f"row {r + 1}: invalid pixel size {px[r]:g} A (give --pixel-size-A)"


def write_particle_table(ps: ParticleSet, out_path, names: list, new_index: np.ndarray) -> Path:
    """The input's table (STAR or .cs), every column and row kept, with image ``names`` (one per row, relative to
    ``ps.root``) and 0-based ``new_index``; written atomically."""
    if ps.kind == "star":
        blocks = {k: v.copy() for k, v in ps.table.items()}
        key = _table_key(blocks, "particles")
        blocks[key]["rlnImageName"] = [join_image_name(int(i), n) for i, n in zip(new_index, names)]
        write_star(out_path, blocks)
        return Path(out_path)
    if ps.kind == "cs":
        from .cs import with_blob_images, write_cs

        return write_cs(out_path, with_blob_images(ps.table, names, new_index))
    raise ValueError(f"a {ps.kind} particle set has no table to write")


def read_particle_ctf_table(path) -> pd.DataFrame:
    """RELION-named CTF columns (rlnVoltage, rlnSphericalAberration, rlnAmplitudeContrast, rlnDefocusU/V), one
    row per particle, from a RELION particles STAR (optics groups merged) or a cryoSPARC particles ``.cs``."""
    path = Path(path)
    if not path.exists():
        raise GenemInputError(path, "file not found")
    if path.suffix.lower() == ".cs":
        from .cs import read_cs
        from .cs_convert import cs_ctf_table

        rows = cs_ctf_table(read_cs(path), path)
    elif path.suffix.lower() == ".star":
        optics, parts = read_particles_star(path)
        rows = merge_optics(optics, parts)
        for col in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnDefocusU", "rlnDefocusV"):
            if col not in rows.columns:
                raise GenemInputError(path, f"no {col} column (the particles need CTF parameters)")
    else:
        raise GenemInputError(path, "give particles as a RELION .star or a cryoSPARC .cs (with CTF parameters)")
    if len(rows) == 0:
        raise GenemInputError(path, "no particles")
    return rows


# ------------------------------------------------------------------------------------------------ micrographs
@dataclass
class MicrographTable:
    """A micrographs STAR: its blocks, the micrograph files (relative to ``root``) and their pixel sizes
    (None where the STAR gives none: the MRC header's then counts)."""

    path: Path
    blocks: dict
    key: str
    root: Path
    names: list
    pixel_size_A: list

    def with_names(self, names: list) -> dict:
        """The blocks, every column kept, with ``names`` as rlnMicrographName."""
        blocks = {k: v.copy() for k, v in self.blocks.items()}
        blocks[self.key]["rlnMicrographName"] = list(names)
        return blocks


def read_micrograph_table(path, *, root=None, pixel_size_A: float | None = None) -> MicrographTable:
    """Read a micrographs STAR (rlnMicrographName) and resolve its files; ``pixel_size_A`` overrides the STAR's."""
    path = Path(path)
    blocks = read_star(path)
    key = _table_key(blocks, "micrographs")
    if key is None or "rlnMicrographName" not in blocks[key].columns:
        raise GenemInputError(path, "no rlnMicrographName column")
    rows = blocks[key]
    names = [str(n) for n in rows["rlnMicrographName"]]
    base = resolve_root(names, path, root)
    if pixel_size_A is not None:
        pxs = [float(pixel_size_A)] * len(rows)
    else:
        pxs = [float(p) if np.isfinite(p) else None for p in
               star_pixel_sizes_A(blocks.get("optics"), rows, MICROGRAPH_PIXEL_SIZE_COLUMNS, path)]
    return MicrographTable(path, blocks, key, base, names, pxs)
