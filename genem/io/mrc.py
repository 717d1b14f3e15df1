"""MRC reading and writing on top of ``mrcfile``, with clear errors and atomic writes."""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import mrcfile
import numpy as np

from .atomic import atomic_path
from .errors import GenemInputError


#: an MRC header pixel size this close to 1.0 A is taken as "not set" (mrcfile's and many programs' default)
UNSET_HEADER_PIXEL_SIZE_A = 1.0
#: the fixed part of an MRC header (an extended header of NSYMBT bytes may follow)
HEADER_BYTES = 1024


def header_pixel_size_A(voxel_size_A: float) -> float | None:
    """The pixel size an MRC header states, or None when it states none (0 or 1.0 A/px: the unset defaults)."""
    vs = float(voxel_size_A)
    return vs if vs > 0 and abs(vs - UNSET_HEADER_PIXEL_SIZE_A) > 1e-6 else None


def mrc_problem(path, detail: str = "") -> str:
    """Why an MRC file cannot be read, from its header and size: truncated (expected N bytes, got M), no MRC
    identifier, an unknown data mode; else ``detail`` (the MRC library's message)."""
    return f"not a readable MRC file ({_header_problem(Path(path)) or detail or 'unknown reason'})"


def _header_problem(path: Path) -> str | None:
    size = path.stat().st_size
    if size < HEADER_BYTES:
        return f"truncated: expected at least a {HEADER_BYTES}-byte header, got {size} bytes"
    head = np.fromfile(path, dtype=np.uint8, count=HEADER_BYTES).tobytes()
    if head[208:211] != b"MAP":
        return "no 'MAP' identifier in its header"
    order = ">" if head[212] == 0x11 else "<"
    nx, ny, nz, mode = (int(v) for v in np.frombuffer(head, f"{order}i4", 4))
    nsymbt = int(np.frombuffer(head, f"{order}i4", 1, 92)[0])
    if min(nx, ny, nz) <= 0 or nsymbt < 0:
        return f"invalid header: dimensions {nx}x{ny}x{nz}, extended header {nsymbt} bytes"
    try:
        dtype = mrcfile.utils.dtype_from_mode(mode)
    except ValueError:
        return f"unknown data mode {mode}"
    data_bytes = nx * ny * nz * dtype.itemsize
    expected = HEADER_BYTES + nsymbt + data_bytes
    if size < expected:
        return (f"truncated: header says {nz}x{ny}x{nx} {dtype.name}, {data_bytes} bytes of data, the file holds "
                f"{max(size - HEADER_BYTES - nsymbt, 0)}: expected {expected} bytes, got {size}")
    return None


@contextlib.contextmanager
def open_mrc(path, *, mmap: bool = False, permissive: bool = True):
    """``mrcfile``'s open (or memory map) for reading, with its warnings kept quiet and every failure (a file
    without a data block included) a GenemInputError saying why (:func:`mrc_problem`)."""
    path = Path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with (mrcfile.mmap if mmap else mrcfile.open)(path, permissive=permissive, mode="r") as m:
                if m.data is None:
                    raise ValueError("no data block")
                yield m
        except GenemInputError:
            raise
        except Exception as e:  # mrcfile raises ValueError / EOFError / AttributeError on corrupt files
            said = [str(w.message) for w in caught] + [str(e) or type(e).__name__]
            raise GenemInputError(path, mrc_problem(path, said[0].splitlines()[0])) from None


def read_mrc(path, *, pixel_size_A: float | None = None, permissive: bool = True):
    """Return ``(data float32, pixel_size_A or None)``; ``pixel_size_A`` overrides the header
    (:func:`header_pixel_size_A`)."""
    path = Path(path)
    if not path.exists():
        raise GenemInputError(path, "file not found")
    with open_mrc(path, permissive=permissive) as m:
        data = np.asarray(m.data, dtype=np.float32).copy()
        voxel = m.voxel_size
        axes = (voxel.x, voxel.y, voxel.z) if m.is_volume() else (voxel.x, voxel.y)
    if pixel_size_A is None:
        pixel_size_A = header_pixel_size_A(axes[0])
        stated = [v for v in map(header_pixel_size_A, axes) if v is not None]  # an unset axis is no disagreement
        if stated and max(stated) - min(stated) > 1e-3 * max(stated):
            raise GenemInputError(path, f"anisotropic voxels ({' x '.join(f'{float(v):g}' for v in axes)} A): "
                                        "resample to cubic voxels first, or give the pixel size to use")
    if data.size == 0:
        raise GenemInputError(path, f"holds no pixels (shape {data.shape})")
    if not np.all(np.isfinite(data)):
        raise GenemInputError(path, "contains NaN or infinite values")
    return data, pixel_size_A


def read_mrc_header_shape(path):
    """``(data shape, header voxel size in A)`` of an MRC file, by memory map."""
    with open_mrc(path, mmap=True) as m:
        return tuple(int(v) for v in m.data.shape), float(m.voxel_size.x)


def read_stack_shape(path) -> tuple[tuple[int, int, int], float]:
    """``((n, height, width), header voxel size in A)`` of an image stack (a single 2D image counts as one)."""
    shape, vs = read_mrc_header_shape(path)
    return ((1,) + shape if len(shape) == 2 else shape), vs


def write_mrc(path, data, pixel_size_A: float, *, dtype=np.float32) -> None:
    """Write ``data`` atomically; a 3D array with ``stack=True`` semantics is written as an image stack (.mrcs)."""
    data = np.ascontiguousarray(np.asarray(data, dtype=dtype))
    path = Path(path)
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as m:
            m.set_data(data)
            if path.suffix == ".mrcs" and data.ndim == 3:
                m.set_image_stack()
            m.voxel_size = float(pixel_size_A)
            m.update_header_stats()
            _label(m)


def _label(m) -> None:
    """GenEM's one header label, in place of mrcfile's, which holds the time: equal data give byte-equal files
    (shards, resumed runs)."""
    m.header.label[:] = b""
    m.header.label[0] = b"GenEM"
    m.header.nlabl = 1


def read_stack_images(path, indices) -> np.ndarray:
    """Read the given 0-based images from a 2D stack (or a single 2D image) by memory map; NaN or infinite
    values are a GenemInputError."""
    path = Path(path)
    if not path.exists():
        raise GenemInputError(path, "image stack not found")
    with open_mrc(path, mmap=True) as m:
        d = m.data
        if d.ndim == 2:
            d = d[None]
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= d.shape[0]):
            raise GenemInputError(path, f"image index {int(idx.max()) + 1} out of range (stack has {d.shape[0]} images)")
        order = np.argsort(idx)  # the file in order: one pass over the memory map
        out = np.empty((len(idx),) + d.shape[1:], np.float32)
        out[order] = d[idx[order]]
    if not np.all(np.isfinite(out)):
        raise GenemInputError(path, "contains NaN or infinite values")
    return out


@contextlib.contextmanager
def new_stack_mmap(path, shape, pixel_size_A: float):
    """Create an image stack (float32, ``shape`` = (n, h, w)) at ``path`` and yield its memory-mapped data; the
    header statistics are written when the block ends."""
    with mrcfile.new_mmap(path, shape=tuple(shape), mrc_mode=2, overwrite=True) as m:
        m.set_image_stack()
        m.voxel_size = float(pixel_size_A)
        yield m.data
        m.update_header_stats()
        _label(m)
