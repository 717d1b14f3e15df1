"""``genem-relion-simulate``: a RELION External job that simulates annotated micrographs with GenEM.

Input (Input tab): ``--in_3dref`` a density map, or the parameter ``model`` (an atomic model .pdb/.cif); with
neither (and no structures in ``config``), GenEM's built-in default structure, as ``genem simulate`` does.
Outputs (nodes): ``micrographs.star`` (micrographs with CTF), coordinates (ground-truth centres for Extract),
``particles.star`` (extracted particles with exact poses, origins and CTF) and the ground-truth map.
The engine's dataset folder is kept whole in ``External/jobNNN/dataset/``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from genem.io import GenemInputError

from .arguments import Param, ProgramSpec
from .lifecycle import RelionJob
from .supervisor import run_program
from .publish import publish_dataset

DATASET_FOLDER = "dataset"

#: (parameter, SimulationConfig field); a parameter left empty keeps the engine's default (or the config file's).
FIELDS = {
    "n_micrographs": "n_micrographs",
    "micrograph_size": "micrograph_size_px",
    "pixel_size": "pixel_size_A",
    "box": "particle_box_px",
    "particles": "particles_per_micrograph",
    "defocus": "defocus_A",
    "noise_mode": "noise_mode",
    "snr": "snr",
    "dose": "dose_e_per_A2",
    "ice_thickness": "ice_thickness_nm",
    "seed": "seed",
}

SPEC = ProgramSpec(
    name="genem-relion-simulate",
    module="genem_relion.simulate",
    description="Simulate cryo-EM micrographs of a map or atomic model with exact ground truth (GenEM): "
                "micrographs with CTF, particle coordinates, extracted particles with poses, and the "
                "ground-truth map, as RELION nodes.",
    inputs={"in_3dref": "density map to image (MRC); or give an atomic model as the parameter model; with "
                        "neither, GenEM's built-in default structure"},
    params=(
        Param("model", "file", None, "atomic model (.pdb/.cif) to image instead of --in_3dref"),
        Param("map_pixel_size", "float", None, "pixel size (A) of an input map whose header has none", minimum=0),
        Param("config", "file", None, "JSON file of GenEM SimulationConfig fields (parameters below override it)"),
        Param("n_micrographs", "int", None, "number of micrographs (engine default 4)", minimum=1),
        Param("micrograph_size", "int", None, "micrograph width = height in pixels (default 1024)", minimum=32),
        Param("pixel_size", "float", None, "pixel size of the simulation in A (default: the input map's, "
                                           "else 1.5)", minimum=0),
        Param("box", "int", None, "particle box in pixels, even (default 1.75x the structure's diameter)", minimum=16),
        Param("particles", "int", None, "particles per micrograph (default 40, fewer when they do not fit)", minimum=0),
        Param("defocus", "range", None, "defocus in A (underfocus positive), one value or low,high drawn per "
                                        "micrograph (default 8000,25000)", minimum=0),
        Param("noise_mode", "choice", None, "poisson (dose and shot noise), snr (Gaussian at a target SNR) or "
                                            "none", choices=("poisson", "snr", "none")),
        Param("snr", "range", None, "target SNR for noise_mode snr, or low,high (default 0.1)"),
        Param("dose", "range", None, "electron dose in e/A^2 for noise_mode poisson, or low,high (default 40)"),
        Param("ice_thickness", "range", None, "ice thickness in nm, or low,high (default 30,60)", minimum=0),
        Param("seed", "int", None, "random seed (default 0); the same seed gives the same data"),
    ),
)


def build_config(job: RelionJob):
    """Map the job's inputs and parameters onto a SimulationConfig (validated by the engine)."""
    from genem.io.mrc import header_pixel_size_A, read_mrc_header_shape
    from genem.simulate import SimulationConfig, StructureSpec

    prm = job.params
    base: dict = {}
    if prm.config is not None:
        try:
            base = json.loads(Path(prm.config).read_text())
        except json.JSONDecodeError as e:
            raise GenemInputError(prm.config, f"not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(base, dict):
            raise GenemInputError(prm.config, "must hold a JSON object of SimulationConfig fields")
    ref = job.input("in_3dref")
    if ref is not None and prm.model is not None:
        raise GenemInputError("inputs", "give either --in_3dref (a map) or the parameter model (an atomic model), "
                                        "not both")
    if ref is not None:
        base["structures"] = [StructureSpec(path=str(Path(ref).resolve()), map_pixel_size_A=prm.map_pixel_size)]
        if prm.pixel_size is None and "pixel_size_A" not in base:
            try:
                _, px = read_mrc_header_shape(ref)
            except Exception:
                raise GenemInputError(ref, "not a readable MRC map") from None
            px = prm.map_pixel_size or header_pixel_size_A(px)
            if px:
                base["pixel_size_A"] = float(px)
    elif prm.model is not None:
        base["structures"] = [StructureSpec(path=str(Path(prm.model).resolve()))]
    for label, field in FIELDS.items():
        v = getattr(prm, label)
        if v is not None:
            base[field] = (v, v) if field == "micrograph_size_px" else v
    return SimulationConfig.from_dict(base)


def run(job: RelionJob) -> None:
    from genem.simulate import run_simulation

    from genem.simulate.config import DEFAULT_STRUCTURE

    cfg = build_config(job)
    out = job.path(DATASET_FOLDER)
    if [s.path for s in cfg.structures] == [str(DEFAULT_STRUCTURE)]:
        job.log(f"no structure given (--in_3dref or the parameter model): imaging GenEM's built-in default "
                f"structure {DEFAULT_STRUCTURE.name}, as 'genem simulate' does")
    job.log(f"simulating {cfg.n_micrographs} micrograph(s) of {cfg.micrograph_size_px[0]}x{cfg.micrograph_size_px[1]} "
            f"px at {cfg.pixel_size_A:g} A/px, ~{cfg.particles_per_micrograph or 'auto'} particles each, box "
            f"{cfg.particle_box_px or 'auto'}, noise {cfg.noise_mode}, seed {cfg.seed}, on {job.device}")
    run_simulation(cfg, out, device=job.device, progress=job.progress("micrographs"),
                   command_line=[SPEC.name, *sys.argv[1:]], log=job.log)
    job.check_abort()
    nodes = publish_dataset(job, out)
    job.log(f"wrote {nodes['particles'][0]} and {nodes['micrographs'][0]}; ground truth {', '.join(nodes['map'])}")


def main(argv=None) -> int:
    return run_program(SPEC, run, argv)


if __name__ == "__main__":
    sys.exit(main())
