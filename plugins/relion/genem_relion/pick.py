"""``genem-relion-pick``: a RELION External job that picks particles with GenEM's picker (or the training-free
difference-of-Gaussians blob picker).

Input: ``--in_mics`` a micrographs STAR (from Import, MotionCorr or CtfFind).
Output (node): coordinates that RELION's Extract takes. RELION 3.1: one coordinate STAR per micrograph where
Extract looks for it (``<job>/<micrograph path after its jobNNN/, no extension>_genem.star``) and the node file
``coords_suffix_genem.star``; RELION 4.0 / 5.0: the same files listed in ``autopick.star`` (block
``coordinate_files``: rlnMicrographName, rlnMicrographCoordinates), typed as RELION's own AutoPick output.
Each coordinate file has rlnCoordinateX (column), rlnCoordinateY (row) in the micrograph's pixels and
rlnAutopickFigureOfMerit. The engine's own output (picks, cryoSPARC ``particles.cs``, ``preview.png``) is kept in
``External/jobNNN/genem_picks/``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from genem.io import GenemInputError

from .arguments import Param, ProgramSpec
from .lifecycle import RelionJob
from .publish import write_coordinates
from .supervisor import run_program

ENGINE_FOLDER = "genem_picks"
LIST_NAME = "autopick.star"

SPEC = ProgramSpec(
    name="genem-relion-pick",
    module="genem_relion.pick",
    description="Pick particles on micrographs with a GenEM picker (or the training-free DoG blob picker); the "
                "output coordinates go straight into RELION's Extract.",
    inputs={"in_mics": "micrographs STAR to pick (from Import, MotionCorr or CtfFind)"},
    required_inputs=(("in_mics",),),
    params=(
        Param("model", "str", None, "picker folder written by 'genem pick train', or dog for the training-free "
                                    "difference-of-Gaussians picker (then give diameter)"),
        Param("diameter", "float", None, "particle diameter in A (for model dog)", minimum=0),
        Param("threshold", "float", None, "keep picks scoring at least this (default: the picker's own, chosen on "
                                          "its training data; 3 robust standard deviations for dog)"),
        Param("pixel_size", "float", None, "override the micrographs' pixel size (A)", minimum=0),
    ),
)


def load_picker(job: RelionJob):
    """The picker the parameters name: a trained picker folder, or the DoG picker of the given diameter."""
    from genem.pick import DogPicker, Picker

    prm = job.params
    if prm.model is None or prm.model.strip().lower() == "dog":
        if prm.diameter is None:
            raise GenemInputError("--model", "give a picker folder (from 'genem pick train'), or model dog with "
                                             "the particle diameter (parameter diameter, in A)")
        return DogPicker(prm.diameter)
    if prm.diameter is not None:
        job.warn("diameter is only used with model dog; a trained picker knows its particle diameter")
    if not Path(prm.model).exists():
        raise GenemInputError(prm.model, "picker model folder not found (paths are relative to the project "
                                         "directory)")
    return Picker.load(prm.model, device=job.device)


def engine_picks(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The engine's picks as ``(micrographs, picks)`` tables: every picked micrograph's rlnMicrographName, and its
    picks with rlnMicrographName, rlnCoordinateX/Y, rlnAutopickFigureOfMerit."""
    from genem.io import read_star
    from genem.pick.apply import PICKS_DIR, SUMMARY_FILE

    summary = json.loads((folder / SUMMARY_FILE).read_text())
    names, tables = [], []
    for m in summary["micrographs"]:
        rows = next(iter(read_star(folder / PICKS_DIR / f"{m['stem']}.star").values()))
        tables.append(rows.assign(rlnMicrographName=m["name"]))
        names.append(m["name"])
    return pd.DataFrame({"rlnMicrographName": names}), pd.concat(tables, ignore_index=True)


def run(job: RelionJob) -> None:
    from genem.pick import pick_micrographs

    mics = job.input("in_mics")
    picker = load_picker(job)
    prm = job.params
    job.log(f"picking the micrographs of {mics} with the {picker.method} picker (particle diameter "
            f"{picker.particle_diameter_A:g} A) on {job.device}")
    folder = pick_micrographs(picker, str(mics), job.path(ENGINE_FOLDER), pixel_size_A=prm.pixel_size,
                              threshold=prm.threshold, progress=job.progress("picked micrographs"))
    job.check_abort()
    names, picks = engine_picks(Path(folder))
    node = write_coordinates(job, names, picks, micrographs_star=mics, kind="picks", list_name=LIST_NAME)
    job.log(f"{len(picks)} picks on {len(names)} micrograph(s); coordinates for Extract: {node}")


def main(argv=None) -> int:
    return run_program(SPEC, run, argv)


if __name__ == "__main__":
    sys.exit(main())
