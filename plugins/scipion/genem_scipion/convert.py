"""Conversion between Scipion sets and the GenEM engine's files (RELION 3.1 STAR + MRC), in one place.

Conventions (checked in ../shared/PLATFORMS.md and by this plugin's tests):

* RELION pose: the projection of a 3D point r is ``A r`` with ``A = Euler_angles2matrix(rot, tilt, psi)`` (ZYZ);
  ``rlnOriginX/YAngst`` = -(offset of the particle centre from the box centre), in Angstrom.
* Scipion's projection ``Transform`` = inverse of ``[A | -origin_px]`` (what scipion-em-relion's conversion does),
  shifts in pixels.
* CTF: Scipion's ``CTFModel`` defocusU/V (A) and defocusAngle (degrees) are RELION's rlnDefocusU/V/Angle unchanged;
  rlnPhaseShift (degrees) = phaseShift.
* Coordinates: rlnCoordinateX/Y (0-based column, row of the particle centre) = Scipion Coordinate x, y (whole
  pixels: Scipion stores integers); rlnAutopickFigureOfMerit = the extra attribute ``_rlnAutopickFigureOfMerit``.
* Image names: ``000003@path.mrcs`` (1-based) = Scipion location ``(3, path.mrcs)``.

This module has no torch and no engine import: it runs in Scipion's environment.
"""
import json
import math
import os
from collections import OrderedDict

import numpy as np

# ----------------------------------------------------------------------------------------------------- poses

def euler_to_matrix_relion(rot_deg, tilt_deg, psi_deg):
    """RELION ``Euler_angles2matrix`` (ZYZ, degrees) -> 3x3 matrix A (projection of r is A r)."""
    a, b, g = (math.radians(v) for v in (rot_deg, tilt_deg, psi_deg))
    ca, sa, cb, sb, cg, sg = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(g), math.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array([
        [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
        [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
        [sc, ss, cb],
    ])


def matrix_to_euler_relion(A):
    """Inverse of :func:`euler_to_matrix_relion` (RELION ``Euler_matrix2angles``) -> (rot, tilt, psi) degrees."""
    A = np.asarray(A, dtype=float)
    abs_sb = math.sqrt(A[0, 2] ** 2 + A[1, 2] ** 2)
    eps = float(np.finfo(np.float32).eps)
    if abs_sb > 16 * eps:
        gamma = math.atan2(A[1, 2], -A[0, 2])
        alpha = math.atan2(A[2, 1], A[2, 0])
        if abs(math.sin(gamma)) < eps:
            sign_sb = np.sign(-A[0, 2] / math.cos(gamma))
        else:
            sign_sb = np.sign(A[1, 2]) if math.sin(gamma) > 0 else -np.sign(A[1, 2])
        beta = math.atan2(sign_sb * abs_sb, A[2, 2])
    elif A[2, 2] > 0:
        alpha, beta, gamma = 0.0, 0.0, math.atan2(-A[1, 0], A[0, 0])
    else:
        alpha, beta, gamma = 0.0, math.pi, math.atan2(A[1, 0], -A[0, 0])
    return math.degrees(alpha), math.degrees(beta), math.degrees(gamma)


def relion_to_transform_matrix(rot_deg, tilt_deg, psi_deg, origin_x_px, origin_y_px):
    """RELION pose -> Scipion projection Transform matrix (4x4): inverse of ``[A | -origin_px]``."""
    M = np.eye(4)
    M[:3, :3] = euler_to_matrix_relion(rot_deg, tilt_deg, psi_deg)
    M[:3, 3] = [-origin_x_px, -origin_y_px, 0.0]
    return np.linalg.inv(M)


def transform_matrix_to_relion(matrix):
    """Scipion projection Transform matrix (4x4) -> (rot, tilt, psi, origin_x_px, origin_y_px)."""
    Minv = np.linalg.inv(np.asarray(matrix, dtype=float))
    rot, tilt, psi = matrix_to_euler_relion(Minv[:3, :3])
    return rot, tilt, psi, -Minv[0, 3], -Minv[1, 3]


# ----------------------------------------------------------------------------------------------------- STAR

class StarError(ValueError):
    """A STAR file that the plugin cannot use; the message names the file and the problem."""

    def __init__(self, path, problem):
        super().__init__("%s: %s" % (path, problem))


def read_star_block(path, block, required=()):
    """Rows of one STAR data block as a list of dicts (values typed by emtable)."""
    from emtable import Table
    if not os.path.exists(path):
        raise StarError(path, "file not found")
    try:
        table = Table(fileName=str(path), tableName=block)
    except Exception as e:  # emtable raises plain Exceptions for missing blocks
        raise StarError(path, "no readable data_%s block (%s)" % (block, e))
    rows = [row._asdict() for row in table]
    missing = [c for c in required if rows and c not in rows[0]]
    if missing:
        raise StarError(path, "data_%s lacks column(s) %s" % (block, ", ".join(missing)))
    return rows


def read_relion_star(path, block, required=()):
    """A RELION 3.1 block with its optics group's columns merged into each row (3.0 files: one unnamed block,
    no optics)."""
    if not os.path.exists(path):
        raise StarError(path, "file not found")
    try:
        rows = read_star_block(path, block, required=())
    except StarError:
        try:
            rows = read_star_block(path, "", required=())
        except StarError:
            raise StarError(path, "no data_%s block" % block) from None
    try:
        optics = read_star_block(path, "optics")
    except StarError:
        optics = []
    if optics:
        by_group = {int(o["rlnOpticsGroup"]): o for o in optics}
        merged = []
        for r in rows:
            group = by_group.get(int(r.get("rlnOpticsGroup", 1)))
            if group is None:
                raise StarError(path, "row refers to optics group %s, not in data_optics" % r.get("rlnOpticsGroup"))
            m = dict(group)
            m.update(r)
            merged.append(m)
        rows = merged
    missing = [c for c in required if rows and c not in rows[0]]
    if missing:
        raise StarError(path, "data_%s lacks column(s) %s" % (block, ", ".join(missing)))
    return rows


def _format_value(v):
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "%.6f" % v
    s = str(v)
    return s if s and not any(c.isspace() for c in s) else '"%s"' % s


def write_star(path, blocks):
    """Write ``{block_name: [row dicts]}`` as a STAR file, atomically (temporary file + rename)."""
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("\n# version 30001\n")
        for name, rows in blocks.items():
            f.write("\ndata_%s\n\nloop_\n" % name)
            columns = list(rows[0].keys()) if rows else []
            for i, c in enumerate(columns, 1):
                f.write("_%s #%d\n" % (c, i))
            for r in rows:
                f.write(" ".join(_format_value(r[c]) for c in columns) + "\n")
            f.write("\n")
    os.replace(tmp, path)


def split_image_name(name):
    """``"000003@a.mrcs"`` -> ``(3, "a.mrcs")`` (1-based, as RELION and Scipion count)."""
    if "@" in name:
        idx, fn = name.split("@", 1)
        return int(idx), fn
    return 1, name


def join_image_name(index, filename):
    return "%06d@%s" % (int(index), filename)


def strip_scipion_suffix(filename):
    """Scipion may tag a file with its type (``a.mrc:mrcs``); RELION and the engine want the path only."""
    for suffix in (":mrcs", ":mrc", ":spi", ":stk"):
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


# ----------------------------------------------------------------------------------------------------- Scipion

def pixel_size_from_row(row, *columns):
    """The first positive pixel size among ``columns``, else RELION 3.0's detector pixel / magnification."""
    for c in columns:
        if float(row.get(c, 0) or 0) > 0:
            return float(row[c])
    if float(row.get("rlnMagnification", 0) or 0) > 0 and "rlnDetectorPixelSize" in row:
        return float(row["rlnDetectorPixelSize"]) * 1e4 / float(row["rlnMagnification"])
    return 0.0


def acquisition_from_row(row):
    from pwem.objects import Acquisition
    acq = Acquisition()
    acq.setVoltage(float(row["rlnVoltage"]))
    acq.setSphericalAberration(float(row["rlnSphericalAberration"]))
    acq.setAmplitudeContrast(float(row["rlnAmplitudeContrast"]))
    acq.setMagnification(float(row.get("rlnMagnification", 10000.0)))
    return acq


def ctf_from_row(row):
    """RELION CTF columns -> Scipion CTFModel (values unchanged: same conventions)."""
    from pwem.objects import CTFModel
    ctf = CTFModel()
    ctf.setStandardDefocus(float(row["rlnDefocusU"]), float(row["rlnDefocusV"]), float(row["rlnDefocusAngle"]))
    # setStandardDefocus may swap U/V (+90 deg) to keep U >= V; the engine's values must round-trip unchanged
    ctf.setDefocusU(float(row["rlnDefocusU"]))
    ctf.setDefocusV(float(row["rlnDefocusV"]))
    ctf.setDefocusAngle(float(row["rlnDefocusAngle"]))
    ctf.setPhaseShift(float(row.get("rlnPhaseShift", 0.0)))
    if "rlnCtfMaxResolution" in row:
        ctf.setResolution(float(row["rlnCtfMaxResolution"]))
    return ctf


def ctf_to_row(ctf):
    return OrderedDict([
        ("rlnDefocusU", float(ctf.getDefocusU())),
        ("rlnDefocusV", float(ctf.getDefocusV())),
        ("rlnDefocusAngle", float(ctf.getDefocusAngle())),
        ("rlnPhaseShift", float(ctf.getPhaseShift() or 0.0)),
        ("rlnCtfBfactor", 0.0),
    ])


def transform_from_row(row, pixel_size_A):
    """RELION pose columns (3.1 Angstrom origins, or 3.0 pixel origins) -> Scipion Transform."""
    from pwem.objects import Transform
    if "rlnOriginXAngst" in row:
        ox, oy = float(row["rlnOriginXAngst"]) / pixel_size_A, float(row["rlnOriginYAngst"]) / pixel_size_A
    else:
        ox, oy = float(row.get("rlnOriginX", 0.0)), float(row.get("rlnOriginY", 0.0))
    M = relion_to_transform_matrix(float(row.get("rlnAngleRot", 0.0)), float(row.get("rlnAngleTilt", 0.0)),
                                   float(row.get("rlnAnglePsi", 0.0)), ox, oy)
    return Transform(M)


def transform_to_row(transform, pixel_size_A):
    rot, tilt, psi, ox, oy = transform_matrix_to_relion(transform.getMatrix())
    return OrderedDict([("rlnAngleRot", rot), ("rlnAngleTilt", tilt), ("rlnAnglePsi", psi),
                        ("rlnOriginXAngst", ox * pixel_size_A), ("rlnOriginYAngst", oy * pixel_size_A)])


def _abspath(root, path):
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))


def _relpath(path):
    """Scipion keeps file names relative to the project folder (the protocol's working directory)."""
    return os.path.relpath(path) if os.path.isabs(path) else path


def micrographs_from_star(star_path, micSet, ctfSet=None):
    """Fill an empty SetOfMicrographs (and SetOfCTF) from a RELION micrographs STAR. Ids are 1..N in file order.

    Returns ``{rlnMicrographName: Micrograph}`` for linking coordinates and particles."""
    from pwem.objects import Micrograph
    root = os.path.dirname(os.path.abspath(star_path))
    rows = read_relion_star(star_path, "micrographs", required=("rlnMicrographName",))
    if not rows:
        raise StarError(star_path, "no micrographs")
    first = rows[0]
    pixel = pixel_size_from_row(first, "rlnMicrographPixelSize", "rlnImagePixelSize")
    if pixel <= 0:
        raise StarError(star_path, "no rlnMicrographPixelSize in data_optics")
    micSet.setSamplingRate(pixel)
    micSet.setAcquisition(acquisition_from_row(first))
    by_name = OrderedDict()
    for i, row in enumerate(rows, 1):
        mic = Micrograph()
        mic.setObjId(i)
        mic.setLocation(_relpath(_abspath(root, row["rlnMicrographName"])))
        mic.setMicName(os.path.basename(row["rlnMicrographName"]))
        mic.setSamplingRate(pixel)
        mic.setAcquisition(acquisition_from_row(row))
        micSet.append(mic)
        by_name[row["rlnMicrographName"]] = mic
    micSet.write()
    if ctfSet is not None:
        if "rlnDefocusU" not in first:
            raise StarError(star_path, "no CTF columns (rlnDefocusU/V/Angle)")
        ctfSet.setMicrographs(micSet)
        for row, mic in zip(rows, by_name.values()):
            ctf = ctf_from_row(row)
            ctf.setObjId(mic.getObjId())
            ctf.setMicrograph(mic)
            ctfSet.append(ctf)
        ctfSet.write()
    return by_name


def coordinates_from_star(star_path, coordSet, mics_by_name, box_px):
    """Fill a SetOfCoordinates from a particles (or coordinates) STAR with rlnMicrographName + rlnCoordinateX/Y."""
    from pwem.objects import Coordinate
    rows = read_relion_star(star_path, "particles",
                            required=("rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY"))
    coordSet.setBoxSize(int(box_px))
    for i, row in enumerate(rows, 1):
        mic = mics_by_name.get(row["rlnMicrographName"])
        if mic is None:
            raise StarError(star_path, "particle %d refers to unknown micrograph %s" % (i, row["rlnMicrographName"]))
        coord = Coordinate()
        coord.setObjId(i)
        coord.setMicrograph(mic)
        coord.setPosition(int(round(float(row["rlnCoordinateX"]))), int(round(float(row["rlnCoordinateY"]))))
        coordSet.append(coord)
    coordSet.write()


def particles_from_star(star_path, partSet, mics_by_name=None, ids=None):
    """Fill an empty SetOfParticles from a RELION 3.1 particles STAR: locations, CTF, projection alignment
    (when the STAR has angles), coordinates and micrograph ids (when ``mics_by_name`` is given).

    ``ids``: the Scipion ids of the rows (default 1..N in file order)."""
    from pwem.constants import ALIGN_NONE, ALIGN_PROJ
    from pwem.objects import Coordinate, Particle
    root = os.path.dirname(os.path.abspath(star_path))
    rows = read_relion_star(star_path, "particles", required=("rlnImageName",))
    if not rows:
        raise StarError(star_path, "no particles")
    if ids is not None and len(ids) != len(rows):
        raise StarError(star_path, "has %d particles, expected %d" % (len(rows), len(ids)))
    first = rows[0]
    pixel = pixel_size_from_row(first, "rlnImagePixelSize", "rlnPixelSize")
    if pixel <= 0:
        raise StarError(star_path, "no rlnImagePixelSize")
    has_ctf = "rlnDefocusU" in first
    has_pose = "rlnAngleRot" in first and "rlnAngleTilt" in first
    partSet.setSamplingRate(pixel)
    if "rlnVoltage" in first:
        partSet.setAcquisition(acquisition_from_row(first))
    partSet.setHasCTF(has_ctf)
    partSet.setAlignment(ALIGN_PROJ if has_pose else ALIGN_NONE)
    for i, row in enumerate(rows):
        index, fn = split_image_name(row["rlnImageName"])
        part = Particle()
        part.setObjId(int(ids[i]) if ids is not None else i + 1)
        part.setLocation(index, _relpath(_abspath(root, fn)))
        part.setSamplingRate(pixel)
        if "rlnVoltage" in row:
            part.setAcquisition(acquisition_from_row(row))
        if has_ctf:
            ctf = ctf_from_row(row)
            part.setCTF(ctf)
        if has_pose:
            part.setTransform(transform_from_row(row, pixel))
        if mics_by_name is not None and "rlnMicrographName" in row:
            mic = mics_by_name.get(row["rlnMicrographName"])
            if mic is None:
                raise StarError(star_path, "particle %d refers to unknown micrograph %s"
                                % (i + 1, row["rlnMicrographName"]))
            coord = Coordinate()
            coord.setMicrograph(mic)
            coord.setPosition(int(round(float(row["rlnCoordinateX"]))), int(round(float(row["rlnCoordinateY"]))))
            part.setCoordinate(coord)
            part.setMicId(mic.getObjId())
        partSet.append(part)
    partSet.write()
    return len(rows)


def particles_to_star(partSet, star_path, id_column="rlnGenemScipionId"):
    """Write a SetOfParticles as a RELION 3.1 particles STAR (absolute image paths, one optics group).

    Each row carries the particle's Scipion id in ``id_column`` so results can be matched back by id."""
    from pwem.constants import ALIGN_PROJ
    pixel = float(partSet.getSamplingRate())
    from pwem.objects import Acquisition
    acq = partSet.getAcquisition() or Acquisition()
    first = partSet.getFirstItem()
    box = int(first.getXDim())
    optics = OrderedDict([
        ("rlnOpticsGroupName", "opticsGroup1"), ("rlnOpticsGroup", 1),
        ("rlnMicrographOriginalPixelSize", pixel),
        # sets without CTF may carry no acquisition: RELION still wants the columns (unused without CTF)
        ("rlnVoltage", float(acq.getVoltage() or 300.0)),
        ("rlnSphericalAberration", float(acq.getSphericalAberration() or 2.7)),
        ("rlnAmplitudeContrast", float(acq.getAmplitudeContrast() or 0.1)),
        ("rlnImagePixelSize", pixel), ("rlnImageSize", box), ("rlnImageDimensionality", 2),
    ])
    with_pose = partSet.getAlignment() == ALIGN_PROJ
    rows = []
    for part in partSet.iterItems(orderBy="id"):
        index, fn = part.getLocation()
        fn = os.path.abspath(strip_scipion_suffix(fn))
        row = OrderedDict([("rlnImageName", join_image_name(index if index else 1, fn))])
        if part.hasCoordinate():
            coord = part.getCoordinate()
            row["rlnCoordinateX"] = float(coord.getX())
            row["rlnCoordinateY"] = float(coord.getY())
            row["rlnMicrographName"] = coord.getMicName() or "mic_%06d" % (coord.getMicId() or 0)
        if partSet.hasCTF() and part.hasCTF():
            row.update(ctf_to_row(part.getCTF()))
        if with_pose and part.hasTransform():
            row.update(transform_to_row(part.getTransform(), pixel))
        row["rlnOpticsGroup"] = 1
        row[id_column] = int(part.getObjId())
        rows.append(row)
    columns = []
    for r in rows:  # keep the union of columns (all rows get every column the first had)
        for c in r:
            if c not in columns:
                columns.append(c)
    for r in rows:
        missing = [c for c in columns if c not in r]
        if missing:
            raise ValueError("particle %s lacks %s; the set is not uniform" % (r[id_column], ", ".join(missing)))
    write_star(star_path, OrderedDict([("optics", [optics]), ("particles", rows)]))
    return len(rows)


# ----------------------------------------------------------------------------------------------------- picking
PICK_BOX_FACTOR = 1.5  # coordinates' box = this x the particle diameter, rounded up to an even number of pixels


def micrographs_to_star(micSet, star_path):
    """A micrographs STAR (absolute paths, the set's sampling rate); returns ``{rlnMicrographName: Micrograph}``."""
    mics = OrderedDict((os.path.abspath(strip_scipion_suffix(m.getFileName())), m.clone())
                       for m in micSet.iterItems(orderBy="id"))
    optics = [{"rlnOpticsGroupName": "opticsGroup1", "rlnOpticsGroup": 1,
               "rlnMicrographPixelSize": float(micSet.getSamplingRate())}]
    write_star(star_path, {"optics": optics,
                           "micrographs": [{"rlnMicrographName": n, "rlnOpticsGroup": 1} for n in mics]})
    return mics


def pick_box_px(diameter_A, pixel_A):
    return 2 * int(math.ceil(PICK_BOX_FACTOR * float(diameter_A) / float(pixel_A) / 2.0))


def coordinates_from_picks(picks_dir, coordSet, mics_by_name):
    """Fill a SetOfCoordinates from a ``genem pick apply`` folder (``picks.json``: the micrographs and the particle
    diameter; ``picks/<stem>.star``: rlnCoordinateX/Y, rlnAutopickFigureOfMerit); box: :func:`pick_box_px`."""
    from pwem.objects import Coordinate
    from pyworkflow.object import Float
    summary_path = os.path.join(picks_dir, "picks.json")
    if not os.path.exists(summary_path):
        raise StarError(picks_dir, "the engine finished but wrote no picks.json")
    summary = json.load(open(summary_path))
    pixel = float(summary["micrographs"][0]["pixel_size_A"]) if summary["micrographs"] else 1.0
    coordSet.setBoxSize(pick_box_px(summary["particle_diameter_A"], pixel))
    n = 0
    for m in summary["micrographs"]:
        mic = mics_by_name.get(m["name"])
        if mic is None:
            raise StarError(summary_path, "picks of unknown micrograph %s" % m["name"])
        star = os.path.join(picks_dir, "picks", m["stem"] + ".star")
        for row in read_star_block(star, "", required=("rlnCoordinateX", "rlnCoordinateY")) if m["n_picks"] else []:
            n += 1
            coord = Coordinate()
            coord.setObjId(n)
            coord.setMicrograph(mic)
            coord.setPosition(int(round(float(row["rlnCoordinateX"]))), int(round(float(row["rlnCoordinateY"]))))
            coord._rlnAutopickFigureOfMerit = Float(float(row.get("rlnAutopickFigureOfMerit", 0.0)))
            coordSet.append(coord)
    coordSet.write()
    return n
