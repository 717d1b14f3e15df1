"""The one conversion between RELION particle STAR tables and cryoSPARC particle datasets (``.cs``).

The engine (``particles.cs`` of a simulation, ``.cs`` particle sets) and the cryoSPARC adapter go through these
functions; they hold all the convention changes:

=====================  ==================================  =============================================
quantity               RELION STAR (engine)                cryoSPARC ``.cs``
=====================  ==================================  =============================================
image                  ``rlnImageName`` = ``000007@p.mrcs``  ``blob/path`` = ``p.mrcs``, ``blob/idx`` = 6
                       (1-based index)                     (0-based index)
paths                  relative to the STAR's folder       relative to the cryoSPARC project directory
                                                           (``>`` prefix: relative to the .csg/.cs folder)
box                    ``rlnImageSize`` (optics)           ``blob/shape`` = [ny, nx]
pixel size             ``rlnImagePixelSize`` (optics)      ``blob/psize_A``, ``alignments3D/psize_A``
defocus                ``rlnDefocusU``/``V`` (A)           ``ctf/df1_A``/``df2_A`` (A)
astigmatism angle      ``rlnDefocusAngle`` (degrees)       ``ctf/df_angle_rad`` (radians)
phase shift            ``rlnPhaseShift`` (degrees)         ``ctf/phase_shift_rad`` (radians)
optics group           ``rlnOpticsGroup`` (1-based)        ``ctf/exp_group_id`` (0-based)
pose                   ``rlnAngleRot/Tilt/Psi`` (ZYZ, deg)  ``alignments3D/pose`` rotation vector (rad) with
                       A = Euler_angles2matrix(...)        A = Rotation.from_rotvec(pose).as_matrix().T
shift                  ``rlnOriginX/YAngst`` (A)           ``alignments3D/shift`` = (x, y) pixels, same sign
half set               ``rlnRandomSubset`` (1, 2)          ``alignments3D/split`` (0, 1)
class                  ``rlnClassNumber`` (1-based)        ``alignments3D/class`` (0-based)
coordinates            ``rlnCoordinateX/Y`` (pixels,       ``location/center_x_frac`` = x / width,
                       column/row of the centre)           ``center_y_frac`` = y / height,
                                                           ``location/micrograph_shape`` = [height, width]
=====================  ==================================  =============================================

The pose and shift conventions are those of pyem's ``csparc2star`` and cryoDRGN's ``parse_pose_csparc``; the
defocus conventions were checked against a STAR file and the ``.cs`` that cryoSPARC's own importer made from it
(tests/cryosparc/test_convert.py). cryoSPARC unique ids (``uid``, 64-bit) travel through STAR files as the text
column ``rlnGenemCsUid`` (``0x`` + 16 hex digits), so passthrough slots can be rejoined after the engine ran.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping

import numpy as np
import pandas as pd
from cryosparc.dataset import Dataset
from scipy.spatial.transform import Rotation

from genem.physics.rotations import euler_to_matrix_relion, matrix_to_euler_relion

from .cs import EXPOSURE_BLOB_FIELDS, blob_paths, complete_slots, format_uid, parse_uid, stable_uid, write_cs
from .errors import GenemInputError
from .mrc import read_mrc_header_shape
from .star import join_image_name, merge_optics, split_image_name

UID_COLUMN = "rlnGenemCsUid"
SIGN_COLUMN = "rlnGenemCsBlobSign"
#: cryoSPARC's own importer gives RELION particle stacks this sign (checked on a real import).
DEFAULT_BLOB_SIGN = -1.0
#: the CTF fields a particle needs, and the RELION columns they become (same units)
CTF_COLUMNS = {"ctf/accel_kv": "rlnVoltage", "ctf/cs_mm": "rlnSphericalAberration",
               "ctf/amp_contrast": "rlnAmplitudeContrast", "ctf/df1_A": "rlnDefocusU", "ctf/df2_A": "rlnDefocusV"}


# ---------------------------------------------------------------------------------------------- pose, paths
def pose_rotvec_from_euler_relion(rot_deg, tilt_deg, psi_deg) -> np.ndarray:
    """RELION ZYZ Euler angles (degrees, (...,)) -> cryoSPARC ``alignments3D/pose`` rotation vectors (..., 3)."""
    A = euler_to_matrix_relion(rot_deg, tilt_deg, psi_deg)
    R = np.swapaxes(A, -1, -2)
    shape = R.shape[:-2]
    return Rotation.from_matrix(R.reshape(-1, 3, 3)).as_rotvec().reshape(shape + (3,))


def euler_relion_from_pose_rotvec(pose) -> np.ndarray:
    """cryoSPARC rotation vectors (..., 3) -> RELION (rot, tilt, psi) degrees (..., 3)."""
    pose = np.asarray(pose, dtype=np.float64)
    R = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix()
    A = np.swapaxes(R, -1, -2)
    return np.stack(matrix_to_euler_relion(A), -1).reshape(pose.shape)


def _rebase(path: str, from_root, to_root, prefix: str = "") -> str:
    """Re-express ``path`` (relative to ``from_root`` unless absolute) relative to ``to_root``; POSIX separators."""
    p = path[1:] if path.startswith(">") else path
    if to_root is not None:
        base = Path(from_root) if from_root is not None else Path.cwd()
        full = Path(p) if os.path.isabs(p) else base / p
        p = os.path.relpath(os.path.abspath(full), os.path.abspath(to_root))
    return prefix + PurePosixPath(Path(p).as_posix()).as_posix()


# ------------------------------------------------------------------------------------------------- STAR -> .cs
def _ctf_slot(rows: pd.DataFrame, group: np.ndarray, *, voltage_kV: float = 0.0, cs_mm: float = 0.0,
              amplitude_contrast: float = 0.0) -> dict:
    """The ``ctf`` slot fields of RELION rows (optics merged); the keyword values stand in for missing optics."""
    n = len(rows)

    def get(c, d=0.0):
        return rows[c].to_numpy(np.float64) if c in rows.columns else np.full(n, d)

    return {
        "ctf/type": np.array(["imported"] * n, dtype=object),
        "ctf/exp_group_id": (group - 1).astype(np.uint32),
        "ctf/accel_kv": get("rlnVoltage", voltage_kV).astype(np.float32),
        "ctf/cs_mm": get("rlnSphericalAberration", cs_mm).astype(np.float32),
        "ctf/amp_contrast": get("rlnAmplitudeContrast", amplitude_contrast).astype(np.float32),
        "ctf/df1_A": get("rlnDefocusU").astype(np.float32),
        "ctf/df2_A": get("rlnDefocusV").astype(np.float32),
        "ctf/df_angle_rad": np.deg2rad(get("rlnDefocusAngle")).astype(np.float32),
        "ctf/phase_shift_rad": np.deg2rad(get("rlnPhaseShift")).astype(np.float32),
        "ctf/scale": get("rlnCtfScalefactor", 1.0).astype(np.float32),
        "ctf/bfactor": get("rlnCtfBfactor").astype(np.float32),
    }


def star_to_cs_dataset(
    optics_df: pd.DataFrame | None,
    particles_df: pd.DataFrame,
    *,
    project_root=None,
    star_root=None,
    path_prefix: str = "",
    micrograph_shape_px: tuple[int, int] | Mapping[str, tuple[int, int]] | Callable[[str], tuple[int, int]] | None = None,
    micrograph_psize_A: float | None = None,
    blob_sign: float | None = None,
    extra_blobs: Mapping[str, str] | None = None,
    source: str = "particles.star",
) -> Dataset:
    """Convert RELION particle rows (optics table separate, as ``read_particles_star`` returns) to a cryoSPARC Dataset.

    Paths: STAR paths are taken relative to ``star_root`` (default: the current folder); when ``project_root`` is
    given they are rewritten relative to it (cryoSPARC wants ``blob/path`` relative to its project directory);
    otherwise they are kept as written. ``path_prefix=">"`` marks them relative to the exported .cs/.csg folder.
    Slots written: ``blob`` (always), ``ctf`` (when defocus columns exist), ``alignments3D`` (when angles exist),
    ``location`` (when coordinates and micrograph names exist and ``micrograph_shape_px`` gives [height, width]
    either as one tuple, a mapping from rlnMicrographName or a callable). ``extra_blobs`` maps extra blob slot names
    to image columns, e.g. ``{"blob_clean": "rlnGenemCleanImageName"}``.
    """
    if "rlnImageName" not in particles_df.columns:
        raise GenemInputError(source, "column rlnImageName missing")
    rows = merge_optics(optics_df, particles_df).reset_index(drop=True)
    n = len(rows)
    need = ["rlnImagePixelSize", "rlnImageSize"]
    for c in need:
        if c not in rows.columns:
            raise GenemInputError(source, f"column {c} missing (in data_optics or data_particles)")
    psize = rows["rlnImagePixelSize"].to_numpy(np.float64)
    box = rows["rlnImageSize"].to_numpy(np.int64)

    cols: dict[str, np.ndarray] = {}
    if UID_COLUMN in rows.columns:
        uids = np.array([parse_uid(u) for u in rows[UID_COLUMN]], dtype=np.uint64)
    else:
        uids = np.array([stable_uid(str(s)) for s in rows["rlnImageName"]], dtype=np.uint64)
    if len(np.unique(uids)) != n:
        raise GenemInputError(source, "particle ids are not unique (duplicate rlnImageName or rlnGenemCsUid)")
    cols["uid"] = uids

    def add_blob(slot: str, column: str):
        idx, paths = zip(*(split_image_name(str(s)) for s in rows[column])) if n else ((), ())
        idx = np.asarray(idx, dtype=np.int64)
        if n and idx.min() < 0:
            raise GenemInputError(source, f"{column}: image index below 1")
        cache: dict[str, str] = {}
        out_paths = []
        for p in paths:
            if p not in cache:
                cache[p] = _rebase(p, star_root, project_root, path_prefix)
            out_paths.append(cache[p])
        sign = rows[SIGN_COLUMN].to_numpy(np.float64) if SIGN_COLUMN in rows.columns else \
            np.full(n, DEFAULT_BLOB_SIGN if blob_sign is None else blob_sign)
        cols[f"{slot}/path"] = np.array(out_paths, dtype=object)
        cols[f"{slot}/idx"] = idx.astype(np.uint32)
        cols[f"{slot}/shape"] = np.stack([box, box], -1).astype(np.uint32) if n else np.zeros((0, 2), np.uint32)
        cols[f"{slot}/psize_A"] = psize.astype(np.float32)
        cols[f"{slot}/sign"] = sign.astype(np.float32)
        cols[f"{slot}/import_sig"] = np.zeros(n, np.uint64)

    add_blob("blob", "rlnImageName")
    for slot, column in (extra_blobs or {}).items():
        if column in rows.columns:
            add_blob(slot, column)

    group = rows["rlnOpticsGroup"].to_numpy(np.int64) if "rlnOpticsGroup" in rows.columns else np.ones(n, np.int64)
    if n and group.min() < 1:
        raise GenemInputError(source, "rlnOpticsGroup must be 1 or more")
    if {"rlnDefocusU", "rlnDefocusV"} <= set(rows.columns):
        for c in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast"):
            if c not in rows.columns:
                raise GenemInputError(source, f"column {c} missing (needed for the CTF)")
        cols.update(_ctf_slot(rows, group))

    if {"rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"} <= set(rows.columns):
        pose = pose_rotvec_from_euler_relion(rows["rlnAngleRot"].to_numpy(np.float64),
                                             rows["rlnAngleTilt"].to_numpy(np.float64),
                                             rows["rlnAnglePsi"].to_numpy(np.float64))
        ox = _origin_A(rows, "X", psize)
        oy = _origin_A(rows, "Y", psize)
        cols["alignments3D/pose"] = pose.astype(np.float32)
        cols["alignments3D/shift"] = np.stack([ox / psize, oy / psize], -1).astype(np.float32)
        cols["alignments3D/psize_A"] = psize.astype(np.float32)
        if "rlnRandomSubset" in rows.columns:
            cols["alignments3D/split"] = (rows["rlnRandomSubset"].to_numpy(np.int64).clip(1, 2) - 1).astype(np.uint32)
        if "rlnClassNumber" in rows.columns:
            cols["alignments3D/class"] = (rows["rlnClassNumber"].to_numpy(np.int64).clip(1) - 1).astype(np.uint32)

    if {"rlnCoordinateX", "rlnCoordinateY", "rlnMicrographName"} <= set(rows.columns) and micrograph_shape_px is not None:
        names = [str(s) for s in rows["rlnMicrographName"]]
        shapes = np.array([_mic_shape(micrograph_shape_px, s, source) for s in names], dtype=np.int64).reshape(n, 2)
        mic_paths = {s: _rebase(s, star_root, project_root, path_prefix) for s in set(names)}
        cols["location/micrograph_uid"] = np.array([stable_uid(s) for s in names], dtype=np.uint64)
        cols["location/exp_group_id"] = (group - 1).astype(np.uint32)
        cols["location/micrograph_path"] = np.array([mic_paths[s] for s in names], dtype=object)
        cols["location/micrograph_shape"] = shapes.astype(np.uint32)
        cols["location/center_x_frac"] = (rows["rlnCoordinateX"].to_numpy(np.float64) / shapes[:, 1]).astype(np.float32)
        cols["location/center_y_frac"] = (rows["rlnCoordinateY"].to_numpy(np.float64) / shapes[:, 0]).astype(np.float32)
        mpsize = micrograph_psize_A
        if mpsize is None:
            for c in ("rlnMicrographPixelSize", "rlnMicrographOriginalPixelSize"):
                if c in rows.columns:
                    mpsize = rows[c].to_numpy(np.float64)
                    break
        cols["location/micrograph_psize_A"] = np.broadcast_to(
            np.asarray(mpsize if mpsize is not None else psize, np.float64), (n,)).astype(np.float32)

    return complete_slots(Dataset(cols))


def _origin_A(rows: pd.DataFrame, axis: str, psize: np.ndarray) -> np.ndarray:
    if f"rlnOrigin{axis}Angst" in rows.columns:
        return rows[f"rlnOrigin{axis}Angst"].to_numpy(np.float64)
    if f"rlnOrigin{axis}" in rows.columns:  # RELION 3.0: pixels
        return rows[f"rlnOrigin{axis}"].to_numpy(np.float64) * psize
    return np.zeros(len(rows))


def _mic_shape(spec, name: str, source) -> tuple[int, int]:
    if callable(spec):
        shape = spec(name)
    elif isinstance(spec, Mapping):
        if name not in spec:
            raise GenemInputError(source, f"no micrograph shape known for {name}")
        shape = spec[name]
    else:
        shape = spec
    h, w = (int(v) for v in shape)
    if h <= 0 or w <= 0:
        raise GenemInputError(source, f"bad micrograph shape {shape} for {name}")
    return h, w


# ------------------------------------------------------------------------------------------------- .cs -> STAR
def cs_dataset_to_star(
    dataset: Dataset,
    *,
    project_root=None,
    star_root=None,
    source: str = "dataset.cs",
    blob_slot: str = "blob",
    alignments_slot: str = "alignments3D",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Convert a cryoSPARC particle Dataset to RELION ``(optics_df, particles_df)``.

    ``blob/path`` values are relative to ``project_root`` (``>``-prefixed ones to the .cs folder: pass that as
    ``project_root``); with ``star_root`` they are rewritten relative to the folder the STAR will live in.
    The uid goes to ``rlnGenemCsUid`` and the blob sign to ``rlnGenemCsBlobSign``.
    """
    fields = set(dataset.fields())
    for f in (f"{blob_slot}/path", f"{blob_slot}/idx", f"{blob_slot}/shape", f"{blob_slot}/psize_A"):
        if f not in fields:
            raise GenemInputError(source, f"field {f} missing (not a particle dataset with images)")
    n = len(dataset)
    shape = np.asarray(dataset[f"{blob_slot}/shape"]).reshape(n, 2)
    if n and np.any(shape[:, 0] != shape[:, 1]):
        raise GenemInputError(source, "non-square particle images are not supported")
    box = shape[:, 0].astype(np.int64)
    psize = np.asarray(dataset[f"{blob_slot}/psize_A"], np.float64)
    has_ctf = "ctf/df1_A" in fields

    def f64(name, default=0.0):
        return np.asarray(dataset[name], np.float64) if name in fields else np.full(n, default)

    exp = np.asarray(dataset["ctf/exp_group_id"], np.int64) if "ctf/exp_group_id" in fields else np.zeros(n, np.int64)
    kv, cs_mm, q0 = f64("ctf/accel_kv", 300.0), f64("ctf/cs_mm", 2.7), f64("ctf/amp_contrast", 0.1)
    opt_key = pd.DataFrame({"exp": exp, "kv": kv, "cs": cs_mm, "q0": q0, "psize": psize, "box": box})
    uniq = opt_key.drop_duplicates().reset_index(drop=True)
    if uniq["exp"].is_unique:
        uniq["group"] = uniq["exp"] + 1
    else:
        uniq["group"] = np.arange(1, len(uniq) + 1)
    group = opt_key.merge(uniq, on=list(opt_key.columns), how="left")["group"].to_numpy(np.int64)
    mpsize = f64("location/micrograph_psize_A")
    optics = pd.DataFrame({
        "rlnOpticsGroupName": [f"opticsGroup{g}" for g in uniq["group"]],
        "rlnOpticsGroup": uniq["group"].astype(int),
        "rlnMicrographOriginalPixelSize": uniq["psize"].astype(float),
        "rlnVoltage": uniq["kv"].astype(float),
        "rlnSphericalAberration": uniq["cs"].astype(float),
        "rlnAmplitudeContrast": uniq["q0"].astype(float),
        "rlnImagePixelSize": uniq["psize"].astype(float),
        "rlnImageSize": uniq["box"].astype(int),
        "rlnImageDimensionality": 2,
    })
    if np.any(mpsize > 0):
        first = {g: mp for g, mp in zip(group[::-1], mpsize[::-1]) if mp > 0}
        optics["rlnMicrographOriginalPixelSize"] = [float(first.get(g, p)) for g, p in
                                                   zip(optics["rlnOpticsGroup"], optics["rlnImagePixelSize"])]

    cache: dict[str, str] = {}

    def rel(p: str) -> str:
        if p not in cache:
            cache[p] = _rebase(p, project_root, star_root)
        return cache[p]

    paths = [rel(str(p)) for p in dataset[f"{blob_slot}/path"]]
    idx = np.asarray(dataset[f"{blob_slot}/idx"], np.int64)
    parts: dict[str, object] = {}
    if "location/micrograph_path" in fields:
        parts["rlnMicrographName"] = [rel(str(p)) for p in dataset["location/micrograph_path"]]
        mshape = np.asarray(dataset["location/micrograph_shape"], np.float64).reshape(n, 2)
        parts["rlnCoordinateX"] = f64("location/center_x_frac") * mshape[:, 1]
        parts["rlnCoordinateY"] = f64("location/center_y_frac") * mshape[:, 0]
    parts["rlnImageName"] = [join_image_name(int(i), p) for i, p in zip(idx, paths)]
    parts["rlnOpticsGroup"] = group
    if has_ctf:
        parts["rlnDefocusU"] = f64("ctf/df1_A")
        parts["rlnDefocusV"] = f64("ctf/df2_A")
        parts["rlnDefocusAngle"] = np.rad2deg(f64("ctf/df_angle_rad"))
        parts["rlnPhaseShift"] = np.rad2deg(f64("ctf/phase_shift_rad"))
        parts["rlnCtfBfactor"] = f64("ctf/bfactor")
        parts["rlnCtfScalefactor"] = f64("ctf/scale", 1.0)
    a = alignments_slot
    if f"{a}/pose" in fields:
        pose = np.asarray(dataset[f"{a}/pose"], np.float64).reshape(n, 3)
        eul = euler_relion_from_pose_rotvec(pose)
        parts["rlnAngleRot"], parts["rlnAngleTilt"], parts["rlnAnglePsi"] = eul[:, 0], eul[:, 1], eul[:, 2]
        apsize = f64(f"{a}/psize_A")
        apsize = np.where(apsize > 0, apsize, psize)
        shift = np.asarray(dataset[f"{a}/shift"], np.float64).reshape(n, 2)
        parts["rlnOriginXAngst"] = shift[:, 0] * apsize
        parts["rlnOriginYAngst"] = shift[:, 1] * apsize
        if f"{a}/split" in fields:
            parts["rlnRandomSubset"] = np.asarray(dataset[f"{a}/split"], np.int64) + 1
        if f"{a}/class" in fields:
            parts["rlnClassNumber"] = np.asarray(dataset[f"{a}/class"], np.int64) + 1
    if f"{blob_slot}/sign" in fields:
        parts[SIGN_COLUMN] = f64(f"{blob_slot}/sign")
    parts[UID_COLUMN] = [format_uid(u) for u in np.asarray(dataset["uid"], np.uint64)]
    return optics, pd.DataFrame(parts)


# ------------------------------------------------------------------------------------------------ micrographs
def micrographs_star_to_cs_dataset(
    optics_df: pd.DataFrame | None,
    micrographs_df: pd.DataFrame,
    *,
    micrograph_shape_px,
    project_root=None,
    star_root=None,
    path_prefix: str = "",
    source: str = "micrographs.star",
) -> Dataset:
    """RELION micrograph rows (with CTF) -> cryoSPARC exposure Dataset with ``micrograph_blob`` and ``ctf`` slots.

    The uid of each exposure is :func:`stable_uid` of its rlnMicrographName, the same number
    :func:`star_to_cs_dataset` writes into ``location/micrograph_uid`` of the particles on it."""
    if "rlnMicrographName" not in micrographs_df.columns:
        raise GenemInputError(source, "column rlnMicrographName missing")
    rows = merge_optics(optics_df, micrographs_df).reset_index(drop=True)
    n = len(rows)
    names = [str(s) for s in rows["rlnMicrographName"]]
    pcol = next((c for c in ("rlnMicrographPixelSize", "rlnMicrographOriginalPixelSize") if c in rows.columns), None)
    if pcol is None:
        raise GenemInputError(source, "column rlnMicrographPixelSize missing")
    shapes = np.array([_mic_shape(micrograph_shape_px, s, source) for s in names], dtype=np.int64).reshape(n, 2)
    cols: dict[str, np.ndarray] = {"uid": np.array([stable_uid(s) for s in names], dtype=np.uint64)}
    cols["micrograph_blob/path"] = np.array([_rebase(s, star_root, project_root, path_prefix) for s in names], object)
    cols["micrograph_blob/shape"] = shapes.astype(np.uint32)
    cols["micrograph_blob/psize_A"] = rows[pcol].to_numpy(np.float64).astype(np.float32)
    cols["micrograph_blob/format"] = np.array(["MRC"] * n, dtype=object)
    group = rows["rlnOpticsGroup"].to_numpy(np.int64) if "rlnOpticsGroup" in rows.columns else np.ones(n, np.int64)
    if {"rlnDefocusU", "rlnDefocusV"} <= set(rows.columns):
        cols.update(_ctf_slot(rows, group, voltage_kV=300.0, cs_mm=2.7, amplitude_contrast=0.1))
    dset = Dataset(cols)
    extra = [(f"micrograph_blob/{f[0]}",) + tuple(f[1:]) for f in EXPOSURE_BLOB_FIELDS
             if f"micrograph_blob/{f[0]}" not in cols]
    dset.add_fields(extra)
    return complete_slots(dset)


def cs_exposures_to_micrographs_star(dataset: Dataset, *, project_root=None, star_root=None,
                                     source: str = "exposures.cs") -> tuple[pd.DataFrame, pd.DataFrame]:
    """cryoSPARC exposures (``micrograph_blob``) -> RELION ``(optics_df, micrographs_df)``, the inverse of
    :func:`micrographs_star_to_cs_dataset` for the images: rlnMicrographName (rebased as in
    :func:`cs_dataset_to_star`), one optics group per pixel size (rlnMicrographPixelSize), the uid in rlnGenemCsUid."""
    for f in ("micrograph_blob/path", "micrograph_blob/psize_A"):
        if f not in dataset.fields():
            raise GenemInputError(source, f"field {f} missing (not an exposure dataset with micrographs)")
    psize = np.asarray(dataset["micrograph_blob/psize_A"], np.float64)
    sizes, group = np.unique(psize, return_inverse=True)
    optics = pd.DataFrame({"rlnOpticsGroupName": [f"opticsGroup{g}" for g in range(1, len(sizes) + 1)],
                           "rlnOpticsGroup": np.arange(1, len(sizes) + 1), "rlnMicrographPixelSize": sizes})
    mics = pd.DataFrame({"rlnMicrographName": [_rebase(p, project_root, star_root)
                                               for p in blob_paths(dataset, "micrograph_blob")],
                         "rlnOpticsGroup": group.astype(np.int64) + 1,
                         UID_COLUMN: [format_uid(u) for u in np.asarray(dataset["uid"], np.uint64)]})
    return optics, mics


# ------------------------------------------------------------------------------------------------ files
def micrograph_shapes_px(root, names) -> dict:
    """``{rlnMicrographName: (height, width)}`` read from the MRC headers of the micrographs under ``root``."""
    out = {}
    for name in set(map(str, names)):
        p = Path(root) / name
        if not p.exists():
            raise GenemInputError(p, "micrograph not found (needed for the cryoSPARC location slot)")
        shape, _ = read_mrc_header_shape(p)
        out[name] = tuple(int(v) for v in shape[-2:])
    return out


def write_particles_cs(path, optics_df, particles_df, *, micrograph_shape_px=None) -> Path:
    """Write particles as a cryoSPARC Dataset (blob, ctf, alignments3D, location), atomically.

    Paths stay relative to the folder of ``path`` (as in the STAR beside it). Micrograph shapes for the
    ``location`` slot are read from the micrographs when not given."""
    path = Path(path)
    if micrograph_shape_px is None and "rlnMicrographName" in particles_df.columns:
        micrograph_shape_px = micrograph_shapes_px(path.parent, particles_df["rlnMicrographName"])
    dset = star_to_cs_dataset(optics_df, particles_df, micrograph_shape_px=micrograph_shape_px, source=str(path))
    return write_cs(path, dset)


def cs_ctf_table(dataset: Dataset, source) -> pd.DataFrame:
    """The particles' CTF as RELION columns (:data:`CTF_COLUMNS`), one row per particle; a missing field is a
    GenemInputError naming it."""
    missing = [f for f in CTF_COLUMNS if f not in set(dataset.fields())]
    if missing:
        raise GenemInputError(source, f"no {missing[0]} field (the particles need CTF parameters)")
    return pd.DataFrame({col: np.asarray(dataset[f], np.float64) for f, col in CTF_COLUMNS.items()})
