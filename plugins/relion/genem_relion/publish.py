"""Turn a GenEM dataset folder inside a job folder into RELION pipeline nodes.

A GenEM dataset keeps its paths relative to itself (so it can be moved); RELION wants paths relative to the
project directory. The dataset stays as the engine wrote it, in ``External/jobNNN/<folder>/``, and RELION sees
views of it at the top of the job folder:

* ``micrographs.star``  optics + every micrograph with its CTF (node: micrographs)
* ``particles.star``    optics + every particle with pose, origin, CTF and its clean twin (node: particles)
* coordinates           one STAR per micrograph beside it (``<folder>/Micrographs/mic_000001_genem.star``, the
                        place RELION's Extract looks), and the node file RELION expects: ``coords_suffix_genem.star``
                        for RELION 3.1, ``coordinates.star`` (block ``coordinate_files``) for 4.0 and 5.0
* the ground-truth map(s) ``<folder>/ground_truth/structure_NN.mrc`` (node: 3D reference / DensityMap)
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from genem.io import GenemDataset, write_star
from genem.io import dataset as L
from genem.io.atomic import write_text_atomic
from genem.io.star import join_image_name, split_image_name

COORDS_SUFFIX = "genem"
#: Columns a coordinate file carries (those the particles table has): RELION's Extract keeps them on the particles.
COORDINATE_COLUMNS = ("rlnCoordinateX", "rlnCoordinateY", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi",
                      "rlnOriginXAngst", "rlnOriginYAngst", "rlnClassNumber", "rlnAutopickFigureOfMerit")


def reroot_path(prefix: str, path: str) -> str:
    return f"{prefix.rstrip('/')}/{path}"


def reroot_image_name(prefix: str, name: str) -> str:
    i, p = split_image_name(name)
    return join_image_name(i, reroot_path(prefix, p)) if "@" in name else reroot_path(prefix, p)


def coordinate_file_for(micrograph_name: str, job_dir: Path, suffix: str = COORDS_SUFFIX) -> str:
    """Where RELION looks for a micrograph's coordinates: ``<coords job>/<micrograph path after its jobNNN/,
    without extension>_<suffix>.star`` (RELION's decomposePipelineFileName rule)."""
    parts = Path(micrograph_name).parts
    rest = parts
    for k, part in enumerate(parts):
        if part.startswith("job") and part[3:].isdigit():
            rest = parts[k + 1:]
            break
    rel = Path(*rest).with_suffix("")
    return str(Path(job_dir) / f"{rel}_{suffix}.star")


def publish_dataset(job, dataset_dir, *, kinds=("micrographs", "coordinates", "particles", "map")) -> dict:
    """Write the RELION views of the finished GenEM dataset ``dataset_dir`` (inside ``job.out_dir``) and declare
    them as output nodes. Returns ``{kind: [node paths]}``."""
    ds = GenemDataset.open(dataset_dir)
    prefix = Path(dataset_dir).as_posix()
    nodes: dict[str, list[str]] = {}

    mic_blocks = _read(ds.root / L.MICROGRAPHS_STAR)
    mics = mic_blocks["micrographs"].copy()
    mics["rlnMicrographName"] = [reroot_path(prefix, n) for n in mics["rlnMicrographName"]]
    if "micrographs" in kinds:
        p = job.path(L.MICROGRAPHS_STAR)
        write_star(p, {"optics": mic_blocks["optics"], "micrographs": mics})
        job.add_node(p, "micrographs")
        nodes["micrographs"] = [str(p)]

    part_blocks = _read(ds.root / L.PARTICLES_STAR)
    parts = part_blocks["particles"].copy()
    for col in ("rlnImageName", L.CLEAN_IMAGE_COLUMN):
        if col in parts.columns:
            parts[col] = [reroot_image_name(prefix, n) for n in parts[col]]
    parts["rlnMicrographName"] = [reroot_path(prefix, n) for n in parts["rlnMicrographName"]]
    if "particles" in kinds:
        p = job.path(L.PARTICLES_STAR)
        write_star(p, {"optics": part_blocks["optics"], "particles": parts})
        job.add_node(p, "particles")
        nodes["particles"] = [str(p)]

    if "coordinates" in kinds:
        nodes["coordinates"] = [str(write_coordinates(job, mics, parts, micrographs_star=job.path(L.MICROGRAPHS_STAR)))]

    if "map" in kinds:
        nodes["map"] = []
        for rel in ds.manifest.get("ground_truth_maps", []):
            p = Path(prefix) / rel
            job.add_node(p, "map")
            nodes["map"].append(str(p))
    return nodes


def write_coordinates(job, mics: pd.DataFrame, parts: pd.DataFrame, *, micrographs_star, kind: str = "coordinates",
                      list_name: str = "coordinates.star") -> Path:
    """Per-micrograph coordinate STARs where RELION looks for them, plus the coordinates node file in the
    running RELION's form: ``coords_suffix_genem.star`` (3.1: it holds the micrographs STAR's name; Extract gets
    ``--coord_dir <job>/ --coord_suffix _genem.star``) or ``list_name`` (4.0 / 5.0: block ``coordinate_files`` with
    rlnMicrographName, rlnMicrographCoordinates; Extract gets ``--coord_list``). ``mics`` / ``parts`` carry
    project-relative micrograph names."""
    cols = [c for c in COORDINATE_COLUMNS if c in parts.columns]
    files = []
    for name in mics["rlnMicrographName"]:
        rows = parts.loc[parts["rlnMicrographName"] == name, cols].reset_index(drop=True)
        if "rlnAutopickFigureOfMerit" not in rows.columns:
            rows["rlnAutopickFigureOfMerit"] = 1.0
        f = coordinate_file_for(name, job.out_dir)
        write_star(f, {"": rows})  # data_ as RELION's pickers write it
        files.append(f)
    if job.relion_version == "3.1":
        node = job.path(f"coords_suffix_{COORDS_SUFFIX}.star")
        write_text_atomic(node, f"{Path(micrographs_star).as_posix()}\n")
    else:
        node = job.path(list_name)
        table = pd.DataFrame({"rlnMicrographName": list(mics["rlnMicrographName"]), "rlnMicrographCoordinates": files})
        write_star(node, {"coordinate_files": table})
    job.add_node(node, kind)
    return node


def _read(path):
    from genem.io import read_star

    return read_star(path)
