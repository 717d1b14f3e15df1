"""cryoSPARC ``.cs`` files for GenEM datasets. A thin front end: the conversion itself lives in one place,
:mod:`genem_cryosparc.convert` (plugins/cryosparc), which holds every RELION <-> cryoSPARC convention."""
from __future__ import annotations

from pathlib import Path

from .atomic import atomic_path
from .errors import GenemInputError
from .mrc import read_mrc_header_shape


def read_cs(path):
    """A cryoSPARC ``.cs`` file as a ``cryosparc.dataset.Dataset``; a missing or unreadable file is a
    GenemInputError naming it."""
    from cryosparc.dataset import Dataset

    path = Path(path)
    if not path.is_file():
        raise GenemInputError(path, "file not found")
    try:
        return Dataset.load(path)
    except Exception as e:
        raise GenemInputError(path, f"not a readable cryoSPARC .cs file ({type(e).__name__})") from None


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
    from genem_cryosparc.convert import star_to_cs_dataset

    path = Path(path)
    if micrograph_shape_px is None and "rlnMicrographName" in particles_df.columns:
        micrograph_shape_px = micrograph_shapes_px(path.parent, particles_df["rlnMicrographName"])
    dset = star_to_cs_dataset(optics_df, particles_df, micrograph_shape_px=micrograph_shape_px, source=str(path))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            dset.save(f)
    return path
