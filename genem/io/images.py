"""Micrograph images as they come: MRC of any dtype (a single 2D image) or 8-bit PNG/TIFF renders such as
CryoPPP's. The one reader that picking and translation share."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from .errors import GenemInputError
from .mrc import header_pixel_size_A, read_mrc, read_mrc_header_shape

MRC_SUFFIXES = (".mrc", ".mrcs", ".map")
RASTER_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def read_image(path) -> tuple[np.ndarray, float | None]:
    """A 2D micrograph as float32 and the header's pixel size (``None`` for rasters or an unset header)."""
    path = Path(path)
    if _image_kind(path) == "mrc":
        img, px = read_mrc(path)
        _check_2d(path, img.shape)
        return img.reshape(img.shape[-2:]), px
    img = np.asarray(_open_raster(path), dtype=np.float32)
    _check_2d(path, img.shape)
    if not np.all(np.isfinite(img)):
        raise GenemInputError(path, "contains NaN or infinite values")
    return img, None


def stored_dtype(path) -> str:
    """The data type the file stores its pixels in (informative: ``uint8`` for 8-bit renders), or ``unknown``."""
    path = Path(path)
    try:
        if path.suffix.lower() in MRC_SUFFIXES:
            from .mrc import open_mrc

            with open_mrc(path, mmap=True) as m:
                return str(m.data.dtype)
        return str(np.asarray(_open_raster(path)).dtype)
    except Exception:  # only informative
        return "unknown"


def probe_image(path) -> tuple[tuple[int, int], float | None]:
    """Open ``path`` far enough to know it is a readable 2D image: ((rows, columns), header pixel size or None)."""
    path = Path(path)
    if _image_kind(path) == "mrc":
        shape, px = read_mrc_header_shape(path)
        _check_2d(path, shape)
        return (int(shape[-2]), int(shape[-1])), header_pixel_size_A(px)
    with _raster(path) as im:
        im.verify()
        w, h = im.size
    return (h, w), None


def _image_kind(path: Path) -> str:
    """``mrc`` or ``raster`` from the suffix; a missing file or an unknown suffix is a GenemInputError."""
    if not path.is_file():
        raise GenemInputError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix in MRC_SUFFIXES:
        return "mrc"
    if suffix in RASTER_SUFFIXES:
        return "raster"
    raise GenemInputError(path, f"unknown micrograph format {suffix or '(no suffix)'}: use .mrc, .png or .tif")


def _check_2d(path: Path, shape) -> None:
    """One 2D image (an MRC stack of one section counts): anything else is a GenemInputError."""
    shape = tuple(int(n) for n in shape)
    core = shape[1:] if len(shape) == 3 and shape[0] == 1 else shape
    if len(core) != 2 or min(core) < 1:
        raise GenemInputError(path, f"not a single 2D micrograph (shape {shape})")


def _open_raster(path: Path):
    """The raster's pixels as a PIL image, colour renders converted to grey levels."""
    with _raster(path) as im:
        if im.mode in ("RGB", "RGBA", "P", "LA"):
            im = im.convert("L")
        im.load()
        return im.copy()


@contextlib.contextmanager
def _raster(path: Path):
    """PIL's open, every failure (a decompression bomb, a corrupt file) a GenemInputError naming ``path``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            yield im
    except Image.DecompressionBombError as e:
        raise GenemInputError(path, f"not a micrograph: {str(e).split(',')[0]}") from None
    except Exception as e:  # noqa: BLE001 - PIL meets a corrupt file with many kinds (TypeError, SyntaxError ...)
        raise GenemInputError(path, f"not a readable image ({type(e).__name__})") from None
