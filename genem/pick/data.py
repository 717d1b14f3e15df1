"""Particle centres for training and for truth: GenEM dataset folders (exact centres), RELION coordinate STAR files
and CryoPPP-style label masks (disks; touching disks split at the peaks of their distance transform).

Centres are ``(x, y)`` = (column, row) in 0-based pixels of the micrograph they belong to.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genem.io import GenemDataset, GenemInputError, read_star
from genem.io.images import MRC_SUFFIXES, RASTER_SUFFIXES, read_image

from .images import expand_paths, prepare_micrograph

LABEL_SUFFIXES = (".star",) + MRC_SUFFIXES + RASTER_SUFFIXES


@dataclass
class LabelledMicrograph:
    """A micrograph at the picker's pixel size (binned, normalised) with its particle centres in its pixels."""

    name: str
    image: np.ndarray
    centres_px: np.ndarray  # (n, 2) x, y
    source: str             # "synthetic" | "real"


def read_coordinates_star(path) -> tuple[np.ndarray, np.ndarray | None]:
    """``(centres (n, 2), figure of merit (n,) or None)`` from a coordinate STAR (rlnCoordinateX/Y)."""
    blocks = read_star(path)
    rows = next((v for v in blocks.values() if "rlnCoordinateX" in v.columns), None)
    if rows is None:
        if all(len(v) == 0 for v in blocks.values()):
            return np.zeros((0, 2)), np.zeros(0)
        raise GenemInputError(path, "no rlnCoordinateX/rlnCoordinateY columns")
    xy = rows[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(np.float64).reshape(-1, 2)
    fom = rows["rlnAutopickFigureOfMerit"].to_numpy(np.float64) if "rlnAutopickFigureOfMerit" in rows.columns else None
    return xy, fom


def read_mask(path) -> np.ndarray:
    """A label mask as booleans: pixels above half the mask's maximum (8-bit renders carry compression noise)."""
    m, _ = read_image(path)
    top = float(m.max()) if m.size else 0.0
    return m > 0.5 * top if top > 0 else np.zeros(m.shape, bool)


def disk_diameter_px(mask: np.ndarray) -> float:
    """Diameter of the disks of a label mask: that of a disk with the median area of its isolated components
    (touching disks make larger components; the median is that of single disks when most are single)."""
    from scipy import ndimage

    lab, n = ndimage.label(mask)
    if n == 0:
        return 0.0
    areas = ndimage.sum(mask, lab, np.arange(1, n + 1))
    return float(2.0 * np.sqrt(np.median(areas) / np.pi))


def centres_from_mask(mask: np.ndarray, diameter_px: float | None = None) -> np.ndarray:
    """Disk centres of a label mask. Each disk's centre is a peak (value ~ its radius) of the distance transform,
    also where disks touch or overlap, so peaks at least a radius apart, above half the radius, are the centres;
    a component without such a peak gives its deepest point."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    lab, n = ndimage.label(mask)
    if n == 0:
        return np.zeros((0, 2))
    d = diameter_px or disk_diameter_px(mask)
    r = max(1.0, d / 2.0)
    edt = ndimage.distance_transform_edt(mask)
    size = 2 * int(round(r / 2.0)) + 1
    peaks = (edt == ndimage.maximum_filter(edt, size=size)) & (edt >= 0.5 * r)
    plab, npk = ndimage.label(peaks, structure=np.ones((3, 3)))
    cand = np.array(ndimage.center_of_mass(peaks, plab, np.arange(1, npk + 1))).reshape(-1, 2)  # (row, col)
    vals = np.array(ndimage.maximum(edt, plab, np.arange(1, npk + 1))).reshape(-1)
    keep: list[np.ndarray] = []
    for k in np.argsort(-vals, kind="stable"):  # deepest first; drop peaks within a radius of a kept one
        if all(np.hypot(*(cand[k] - c)) >= r for c in keep):
            keep.append(cand[k])
    have = {int(lab[int(round(c[0])), int(round(c[1]))]) for c in keep}
    for comp in range(1, n + 1):
        if comp not in have:
            keep.append(np.array(ndimage.maximum_position(edt, lab, comp), np.float64))
    rc = np.array(keep).reshape(-1, 2)
    order = np.lexsort((rc[:, 1], rc[:, 0]))
    return rc[order][:, ::-1].copy()  # (x, y)


def read_centres(path, diameter_px: float | None = None) -> np.ndarray:
    """Centres from a coordinate STAR or a label mask (by suffix)."""
    path = Path(path)
    if path.suffix.lower() == ".star":
        return read_coordinates_star(path)[0]
    return centres_from_mask(read_mask(path), diameter_px)


def label_key(label_stem: str, micrograph_stems) -> str | None:
    """The micrograph a label file belongs to: same stem, or the stem followed by ``_`` and a suffix
    (``mic_000001_coords.star``, ``x_autopick.star``); the longest such stem wins."""
    hits = [s for s in micrograph_stems if label_stem == s or label_stem.startswith(s + "_")]
    return max(hits, key=len) if hits else None


def pair_labels(labels, micrographs) -> list[tuple[Path, Path]]:
    """(micrograph, label) pairs, matched by file stem; a label without its micrograph is an error."""
    mics = [p for p in expand_paths(micrographs) if p.suffix.lower() in MRC_SUFFIXES + RASTER_SUFFIXES]
    labs = [p for p in expand_paths(labels, "labels") if p.suffix.lower() in LABEL_SUFFIXES]
    if not labs:
        raise GenemInputError(" ".join(map(str, labels)), "no label files (.star or mask images)")
    by_stem = {p.stem: p for p in mics}
    pairs = []
    for lab in labs:
        key = label_key(lab.stem, by_stem)
        if key is None:
            raise GenemInputError(lab, "no micrograph with this name among --real-micrographs")
        pairs.append((by_stem[key], lab))
    return pairs


def dataset_diameter_A(ds: GenemDataset) -> float:
    """Particle diameter of a GenEM dataset: from the mask areas of its first micrographs (labels k > 0)."""
    areas = []
    for name in list(ds.micrographs()["rlnMicrographName"])[:4]:
        m = ds.read_micrograph(name, "mask").astype(np.int64)
        counts = np.bincount(m.ravel())[1:]
        areas += [c for c in counts if c > 0]
    if not areas:
        raise GenemInputError(ds.root, "its masks hold no particles: give the particle diameter")
    return float(2.0 * np.sqrt(np.median(areas) / np.pi)) * ds.pixel_size_A


def dataset_pairs(root) -> list[tuple[Path, np.ndarray, float]]:
    """(noisy micrograph, centres, pixel size) for every micrograph of a GenEM dataset folder."""
    ds = GenemDataset.open(root)
    px = ds.pixel_size_A
    out = []
    for name in ds.micrographs()["rlnMicrographName"]:
        path = ds.micrograph_path(name)
        out.append((path, read_coordinates_star(ds.coordinates_path(name))[0], px))
    return out


def load_labelled(pairs, target_pixel_size_A: float, source: str, *, diameter_px=None) -> list[LabelledMicrograph]:
    """Read, bin and normalise micrographs and put their centres on the binned grid. ``pairs``: (micrograph path,
    centres array or label path, pixel size A)."""
    out = []
    for path, lab, px in pairs:
        img, header_px = read_image(path)
        px = px or header_px
        if px is None:
            raise GenemInputError(path, "no pixel size: give --real-pixel-size-A")
        centres = lab if isinstance(lab, np.ndarray) else read_centres(lab, diameter_px)
        binned, (sy, sx) = prepare_micrograph(img, px, target_pixel_size_A)
        xy = np.asarray(centres, np.float64).reshape(-1, 2) / np.array([sx, sy])
        out.append(LabelledMicrograph(str(path), binned, xy, source))
    return out


def real_diameter_px(pairs) -> float | None:
    """Disk diameter (input pixels) of the first label mask among (micrograph, label) pairs; None for STAR labels."""
    for _, lab in pairs:
        if Path(lab).suffix.lower() != ".star":
            return disk_diameter_px(read_mask(lab))
    return None
