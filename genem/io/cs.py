"""cryoSPARC ``.cs`` files (``cryosparc.dataset.Dataset``): reading, atomic writing, the particle slot layouts,
particle ids, the image fields, and the passthrough merge of an engine result back into the input's dataset.

The conversion to and from RELION STAR tables is :mod:`genem.io.cs_convert`; no other engine module spells a
cryoSPARC field name.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from cryosparc.dataset import Dataset

from .atomic import atomic_path
from .errors import GenemInputError

# Field layouts of the cryoSPARC particle slots (names, dtypes and shapes as cryoSPARC v4/v5 write them).
SLOT_FIELDS: dict[str, list[tuple]] = {
    "blob": [("path", "O"), ("idx", "<u4"), ("shape", "<u4", (2,)), ("psize_A", "<f4"), ("sign", "<f4"),
             ("import_sig", "<u8")],
    "ctf": [("type", "O"), ("exp_group_id", "<u4"), ("accel_kv", "<f4"), ("cs_mm", "<f4"), ("amp_contrast", "<f4"),
            ("df1_A", "<f4"), ("df2_A", "<f4"), ("df_angle_rad", "<f4"), ("phase_shift_rad", "<f4"),
            ("scale", "<f4"), ("scale_const", "<f4"), ("shift_A", "<f4", (2,)), ("tilt_A", "<f4", (2,)),
            ("trefoil_A", "<f4", (2,)), ("tetra_A", "<f4", (4,)), ("anisomag", "<f4", (4,)), ("bfactor", "<f4")],
    "alignments3D": [("split", "<u4"), ("shift", "<f4", (2,)), ("pose", "<f4", (3,)), ("psize_A", "<f4"),
                     ("error", "<f4"), ("error_min", "<f4"), ("resid_pow", "<f4"), ("slice_pow", "<f4"),
                     ("image_pow", "<f4"), ("cross_cor", "<f4"), ("alpha", "<f4"), ("alpha_min", "<f4"),
                     ("weight", "<f4"), ("pose_ess", "<f4"), ("shift_ess", "<f4"), ("class_posterior", "<f4"),
                     ("class", "<u4"), ("class_ess", "<f4")],
    "location": [("micrograph_uid", "<u8"), ("exp_group_id", "<u4"), ("micrograph_path", "O"),
                 ("micrograph_shape", "<u4", (2,)), ("center_x_frac", "<f4"), ("center_y_frac", "<f4"),
                 ("min_dist_A", "<f4"), ("micrograph_psize_A", "<f4")],
}
_ONES = {"ctf/scale", "ctf/scale_const", "alignments3D/alpha", "alignments3D/alpha_min",
         "alignments3D/class_posterior", "alignments3D/class_ess"}
EXPOSURE_BLOB_FIELDS = [("path", "O"), ("idx", "<u4"), ("shape", "<u4", (2,)), ("psize_A", "<f4"), ("format", "O"),
                        ("is_background_subtracted", "<u4"), ("vmin", "<f4"), ("vmax", "<f4"), ("import_sig", "<u8")]


def slot_fields(slot: str, name: str | None = None) -> list[tuple]:
    """Full field specs (``name/field``, dtype[, shape]) of a particle slot, optionally renamed (e.g. ``blob_clean``)."""
    name = name or slot
    return [(f"{name}/{f[0]}",) + tuple(f[1:]) for f in SLOT_FIELDS[slot]]


def complete_slots(dset: Dataset) -> Dataset:
    """Add the remaining fields of every particle slot present (cryoSPARC's defaults: 0, or 1 for scales/posteriors)."""
    present = set(dset.fields())
    add, ones = [], []
    for prefix in dset.prefixes():
        kind = "blob" if prefix.startswith("blob") else prefix
        if kind not in SLOT_FIELDS:
            continue
        for spec, plain in zip(slot_fields(kind, prefix), slot_fields(kind)):
            if spec[0] not in present:
                add.append(spec)
                if plain[0] in _ONES:
                    ones.append(spec[0])
    if add:
        dset.add_fields(add)
        for f in ones:
            dset[f][:] = 1
    rank = {}
    for prefix in dset.prefixes():
        kind = "blob" if prefix.startswith("blob") else prefix
        for k, spec in enumerate(slot_fields(kind, prefix) if kind in SLOT_FIELDS else []):
            rank[spec[0]] = k
    order = sorted(dset.fields(), key=lambda f: (f != "uid", f.split("/", 1)[0], rank.get(f, 999), f))
    return Dataset({f: dset[f] for f in order}) if order != dset.fields() else dset


# ------------------------------------------------------------------------------------------------ ids, files
def stable_uid(text: str) -> int:
    """A 64-bit id fixed by ``text`` (the same input always gets the same cryoSPARC uid)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def format_uid(uid) -> str:
    return f"0x{int(uid):016x}"


def parse_uid(text) -> int:
    s = str(text).strip()
    return int(s, 16) if s.lower().startswith("0x") else int(s)


def read_cs(path) -> Dataset:
    """A cryoSPARC ``.cs`` file as a ``cryosparc.dataset.Dataset``; a missing or unreadable file is a
    GenemInputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise GenemInputError(path, "file not found")
    try:
        return Dataset.load(path)
    except Exception as e:
        raise GenemInputError(path, f"not a readable cryoSPARC .cs file ({cs_problem(path, e)})") from None


def cs_problem(path, error: Exception) -> str:
    """Why a ``.cs`` file cannot be read: truncated (expected N bytes, got M), no NumPy/cryoSPARC header, or the
    loader's own reason."""
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        magic = f.read(6)
        if magic == b"\x93NUMPY":
            f.seek(0)
            try:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(f)
            except Exception:
                return "truncated or damaged NumPy header"
            rows = int(np.prod(shape))
            expected = f.tell() + rows * dtype.itemsize
            if not dtype.hasobject and size < expected:
                return f"truncated: {rows} rows of {dtype.itemsize} bytes: expected {expected} bytes, got {size}"
    if magic != b"\x93NUMPY" and not magic.startswith(b"\x94CSDAT"):
        return "no NumPy or cryoSPARC header"
    cause = error.__cause__ or error.__context__ or error
    return str(cause).splitlines()[0] if str(cause) else type(cause).__name__


def write_cs(path, dset: Dataset) -> Path:
    """Write ``dset`` to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            dset.save(f)
    return path


# ------------------------------------------------------------------------------------------------ particle images
def blob_paths(dset: Dataset, slot: str = "blob") -> list[str]:
    """The image file of each row (``blob/path`` as written: relative to the project, or ``>``-prefixed)."""
    return [p.decode() if isinstance(p, bytes) else str(p) for p in dset[f"{slot}/path"]]


def blob_images(dset: Dataset, source, pixel_size_A: float | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(paths without the '>' prefix, 0-based indices, pixel sizes in A)`` of the particle images;
    ``pixel_size_A`` overrides ``blob/psize_A``."""
    fields = set(dset.fields())
    if "blob/path" not in fields or "blob/idx" not in fields:
        raise GenemInputError(source, "no blob/path and blob/idx fields (no particle images named)")
    paths = [p[1:] if p.startswith(">") else p for p in blob_paths(dset)]
    if pixel_size_A is not None:
        psize = np.full(len(paths), float(pixel_size_A))
    elif "blob/psize_A" in fields:
        psize = np.asarray(dset["blob/psize_A"], dtype=np.float64)
    else:
        raise GenemInputError(source, "no blob/psize_A field; give --pixel-size-A")
    return paths, np.asarray(dset["blob/idx"], dtype=np.int64), psize


def with_blob_images(dset: Dataset, paths, index0) -> Dataset:
    """A copy of ``dset`` whose particle images are ``paths`` / ``index0`` (every other field kept)."""
    out = dset.copy()
    out["blob/path"] = np.array(list(paths), dtype=object)
    out["blob/idx"] = np.asarray(index0).astype(out["blob/idx"].dtype)
    return out


# ---------------------------------------------------------------------------------------------- passthrough merge
#: fields a RELION STAR row carries (the others, e.g. ``ctf/type`` or ``alignments3D/error``, have no STAR column)
STAR_CARRIED_FIELDS = frozenset({
    "blob/path", "blob/idx", "blob/shape", "blob/psize_A", "blob/sign",
    "ctf/exp_group_id", "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast", "ctf/df1_A", "ctf/df2_A",
    "ctf/df_angle_rad", "ctf/phase_shift_rad", "ctf/scale", "ctf/bfactor",
    "alignments3D/pose", "alignments3D/shift", "alignments3D/psize_A", "alignments3D/split", "alignments3D/class",
    "location/micrograph_path", "location/micrograph_shape", "location/center_x_frac", "location/center_y_frac",
})


def merge_into(base: Dataset, new: Dataset, *, slots=None) -> Dataset:
    """Return ``base`` (rows matched by uid, in ``new``'s order) updated with the given ``slots`` of ``new``.

    Within those slots, fields a STAR row carries (:data:`STAR_CARRIED_FIELDS`, and fields of renamed blob slots)
    are replaced; fields ``base`` lacks are added; the others (``ctf/type``, ``alignments3D/error``, ...) keep the
    input's values. Slots outside ``slots`` pass through unchanged. Rows of ``new`` missing from ``base`` are an
    error; rows of ``base`` missing from ``new`` are dropped (the engine may drop particles).
    """
    slots = list(new.prefixes()) if slots is None else list(slots)
    base_uid = np.asarray(base["uid"], np.uint64)
    new_uid = np.asarray(new["uid"], np.uint64)
    order = {int(u): i for i, u in enumerate(base_uid)}
    missing = [int(u) for u in new_uid if int(u) not in order]
    if missing:
        raise GenemInputError("dataset", f"{len(missing)} output rows have uids not in the input (first {missing[0]:#x})")
    out = base.take(np.array([order[int(u)] for u in new_uid], dtype=np.int64))
    have = set(out.fields())
    replace = []
    for f in new.fields():
        slot = f.split("/", 1)[0]
        if f == "uid" or slot not in slots:
            continue
        plain = "blob/" + f.split("/", 1)[1] if slot.startswith("blob") else f
        if f not in have or plain in STAR_CARRIED_FIELDS:
            replace.append(f)
    out.add_fields([_spec(new, f) for f in replace if f not in have])
    for f in replace:
        out[f] = new[f]
    return out


def locate_on_exposures(particles: Dataset, exposures: Dataset, exposure_uid_of) -> Dataset:
    """Put ``particles`` on the exposures they were picked on: ``location/micrograph_uid`` and ``micrograph_path``
    become the exposure's uid and ``micrograph_blob/path``; ``exposure_uid_of`` maps each particle's current
    ``location/micrograph_path`` (the micrograph name the engine saw) to the exposure's uid."""
    path_of = dict(zip(np.asarray(exposures["uid"], np.uint64).tolist(), blob_paths(exposures, "micrograph_blob")))
    names = [p.decode() if isinstance(p, bytes) else str(p) for p in particles["location/micrograph_path"]]
    uids = [int(exposure_uid_of[n]) for n in names]
    particles["location/micrograph_uid"] = np.array(uids, dtype=np.uint64)
    particles["location/micrograph_path"] = np.array([path_of[u] for u in uids], dtype=object)
    return particles


def _spec(dset: Dataset, field: str) -> tuple:
    col = np.asarray(dset[field])
    dt = "O" if col.dtype == object else col.dtype.str
    return (field, dt) + ((tuple(col.shape[1:]),) if col.ndim > 1 else ())
