"""Turn structure files into potentials on the simulation grid (I/O at the edge, physics in genem.physics)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genem.io.errors import GenemInputError
from genem.io.mrc import read_mrc
from genem.ops import resample_fourier_3d
from genem.physics.potential import displace_solvent, potential_from_atoms, read_atomic_model

MODEL_SUFFIXES = {".pdb", ".ent", ".cif", ".mmcif", ".pdbx"}
MAP_SUFFIXES = {".mrc", ".map", ".mrcs", ".rec"}
#: maps in arbitrary units are scaled so the mean inside their envelope is this potential (V): protein against ice
#: (Peng potentials of protein average ~6.4 V inside the molecular envelope, ice ~4.5 V)
MAP_ENVELOPE_POTENTIAL_V = 2.0


@dataclass
class Potential:
    volume_V: np.ndarray  # (box, box, box), z y x, centre at box//2
    pixel_size_A: float
    radius_A: float  # radius of the particle (95% of the potential)
    source: str


def fit_volume_to_box(vol: np.ndarray, box: int) -> np.ndarray:
    """A cubic volume zero-padded or cropped in real space to ``box``^3 at the same pixel size, its centre
    (index N//2) kept at box//2."""
    n = vol.shape[0]
    out = np.zeros((box,) * 3, dtype=vol.dtype)
    m = min(n, box)
    so, do = n // 2 - m // 2, box // 2 - m // 2
    out[do:do + m, do:do + m, do:do + m] = vol[so:so + m, so:so + m, so:so + m]
    return out


def _even_box(diameter_A: float, pixel_size_A: float) -> int:
    b = int(np.ceil(diameter_A / pixel_size_A))
    return max(16, b + (b % 2))


def _radius_of(vol: np.ndarray, pixel_size_A: float) -> float:
    n = vol.shape[0]
    c = np.arange(n) - n // 2
    r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    w = np.clip(vol, 0, None).ravel()
    if w.sum() <= 0:
        return n * pixel_size_A / 4
    order = np.argsort(r.ravel())
    cum = np.cumsum(w[order]) / w.sum()
    # at least half a pixel: a structure inside one voxel (one atom) still has a size to space particles by
    return max(float(r.ravel()[order][np.searchsorted(cum, 0.95)] * pixel_size_A), 0.5 * pixel_size_A)


#: bytes per voxel of a potential's box while it is made and projected: the resampling spectrum (complex128)
#: and the projector's twice-padded half spectrum (complex64), with the potential itself
POTENTIAL_BYTES_PER_VOXEL = 16 + 32 + 4


def available_memory_bytes() -> int:
    """Memory this process can still get: the system's MemAvailable (or the physical memory where that is unknown),
    and no more than the process's own address-space / data limits (``ulimit -v`` / ``-d``, a batch queue's)."""
    have = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    have = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if have is None:
        try:
            have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            have = 16 << 30
    try:
        import resource

        for limit in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
            soft = resource.getrlimit(limit)[0]
            if soft != resource.RLIM_INFINITY:
                have = min(have, soft)
    except (ImportError, ValueError, OSError):
        pass
    return int(have)


def check_potential_box(path, box: int, why: str) -> None:
    """Refuse, with the numbers, a potential box whose making would not fit in memory (before allocating it)."""
    need, have = POTENTIAL_BYTES_PER_VOXEL * float(box) ** 3, available_memory_bytes()
    if need > have:
        raise GenemInputError(path, f"{why}: a {box}^3 potential needs ~{need / 2 ** 30:.1f} GiB, "
                                    f"{have / 2 ** 30:.1f} GiB available")


def load_potential(path, pixel_size_A: float, *, map_pixel_size_A: float | None = None,
                   use_atom_bfactors: bool = False, solvent_potential_V: float = 0.0) -> Potential:
    """A structure file as a potential (V) at ``pixel_size_A`` in a cubic box that holds it."""
    path = Path(path)
    if not path.exists():
        raise GenemInputError(path, "structure file not found")
    suffix = path.suffix.lower()
    if suffix == ".gz":
        suffix = Path(path.stem).suffix.lower()
    if suffix in MODEL_SUFFIXES:
        try:
            pos, els, bs, occ = read_atomic_model(path)
        except Exception as e:
            raise GenemInputError(path, f"not a readable atomic model ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        if not (np.isfinite(occ).all() and np.isfinite(bs).all()) or (occ < 0).any() or (occ > 1).any():
            raise GenemInputError(path, "occupancies must be numbers in [0, 1] and B-factors numbers")
        with np.errstate(all="ignore"):
            extent = 2 * np.linalg.norm(pos - pos.mean(0), axis=1).max()
        if not np.isfinite(extent):
            raise GenemInputError(path, "atom coordinates that are not numbers (NaN, infinite or out of range)")
        box = _even_box(min(extent, 1e9) + 20.0, pixel_size_A)
        check_potential_box(path, box, f"the model spans {extent:.0f} A (check its coordinates)")
        try:
            vol = potential_from_atoms(pos, els, box, pixel_size_A, bfactors_A2=bs if use_atom_bfactors else None,
                                       occupancies=occ)
        except ValueError as e:
            raise GenemInputError(path, str(e)) from None
        vol = displace_solvent(vol, len(pos), pixel_size_A, solvent_potential_V)
    elif suffix in MAP_SUFFIXES:
        data, px = read_mrc(path, pixel_size_A=map_pixel_size_A)
        if data.ndim != 3 or len(set(data.shape)) != 1:
            raise GenemInputError(path, f"map must be a cubic 3D volume, got shape {data.shape}")
        if px is None:
            raise GenemInputError(path, "map header has no pixel size; give it (map_pixel_size_A / --map-pixel-size-A)")
        if not (np.isfinite(px) and px > 0):
            raise GenemInputError(path, f"map pixel size {px} A is not a positive number (map_pixel_size_A / "
                                        "--map-pixel-size-A)")
        n = data.shape[0]
        if not np.isfinite(px):
            raise GenemInputError(path, f"map pixel size {px} A is not a number")
        new_box = int(round(n * px / pixel_size_A))
        new_box += new_box % 2
        if new_box < 2:
            raise GenemInputError(path, f"map of {n} px at {px:g} A/px is {n * px:g} A wide: less than two "
                                        f"{pixel_size_A:g} A pixels")
        check_potential_box(path, new_box, f"the map ({n}^3 px at {px:g} A/px) spans {n * px:.0f} A; at "
                                           f"{pixel_size_A:g} A/px (check --map-pixel-size-A)")
        vol = resample_fourier_3d(data - np.median(data), new_box, centered=False)
        env = vol > vol.mean() + 3 * vol.std()
        if not env.any():
            raise GenemInputError(path, "map has no density above its background")
        vol = vol * (MAP_ENVELOPE_POTENTIAL_V / float(vol[env].mean()))
    else:
        raise GenemInputError(path, f"unknown structure format {path.suffix!r} (use .mrc/.map or .pdb/.cif)")
    vol = np.ascontiguousarray(vol, dtype=np.float32)
    if not np.isfinite(vol).all() or vol.max() <= 0:
        raise GenemInputError(path, "the structure gives no positive, finite potential")
    return Potential(vol, pixel_size_A, _radius_of(vol, pixel_size_A), str(path))
