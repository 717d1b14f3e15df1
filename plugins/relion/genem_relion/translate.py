"""``genem-relion-translate``: a RELION External job that learns the noise of real micrographs and gives it to a
GenEM simulation (unpaired translation), keeping every annotation.

Inputs: ``--in_mics`` real micrographs (a RELION micrographs STAR, e.g. from MotionCorr or CtfFind), and the
simulation to translate: the parameter ``simulated`` (a ``genem-relion-simulate`` job folder, or a GenEM dataset
folder), or ``sim_config`` (a SimulationConfig JSON; with ``--in_3dref`` as its structure) to simulate here first.
Outputs: as ``genem-relion-simulate`` (micrographs, coordinates, particles re-extracted from the translated
micrographs, the ground-truth map); the trained translator stays in ``External/jobNNN/model/``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from genem.io import GenemInputError, read_star
from genem.io.dataset import MICROGRAPHS_STAR, is_dataset_folder
from genem.io.star import MICROGRAPH_PIXEL_SIZE_COLUMNS, star_pixel_sizes_A

from .arguments import Param, ProgramSpec
from .lifecycle import RelionJob
from .supervisor import run_program
from .publish import publish_dataset
from .simulate import DATASET_FOLDER

MODEL_FOLDER = "model"
SIMULATED_FOLDER = "simulated"

SPEC = ProgramSpec(
    name="genem-relion-translate",
    module="genem_relion.translate",
    description="Learn the noise of real micrographs (GenEM translate: CUT with mask-guided PatchNCE) and apply it "
                "to a GenEM simulation; outputs translated micrographs and particles with exact ground truth.",
    inputs={"in_mics": "real micrographs STAR (the noise to learn)",
            "in_3dref": "map to simulate when sim_config is given instead of simulated"},
    required_inputs=(("in_mics",),),
    params=(
        Param("simulated", "str", None, "the simulation to translate: a genem-relion-simulate job folder "
                                        "(External/jobNNN/) or a GenEM dataset folder"),
        Param("sim_config", "file", None, "instead of simulated: a SimulationConfig JSON to simulate in this job"),
        Param("model", "str", None, "an already trained translator (a model folder or model.pt): skip training"),
        Param("steps", "int", None, "training steps at most (default: genem translate train's; validation on "
                                    "held-out real micrographs stops it earlier)", minimum=1),
        Param("tile", "int", None, "training tile in pixels, a multiple of 4 (default: genem translate train's)",
              minimum=32),
        Param("batch_size", "int", None, "tiles per training step (default: genem translate train's)", minimum=1),
        Param("real_pixel_size", "float", None, "pixel size (A) of the real micrographs (default: the STAR's "
                                                "rlnMicrographPixelSize, else the MRC header)", minimum=0),
        Param("max_micrographs", "int", None, "train on at most this many simulated micrographs", minimum=1),
        Param("seed", "int", 0, "random seed of the training"),
    ),
)


def simulated_dataset(job: RelionJob) -> Path:
    """The GenEM dataset folder to translate: given, or simulated here from ``sim_config``."""
    prm = job.params
    if (prm.simulated is None) == (prm.sim_config is None):
        raise GenemInputError("parameters", "give exactly one of simulated (a simulate job folder) or sim_config "
                                            "(a SimulationConfig JSON)")
    if prm.simulated is not None:
        p = Path(prm.simulated)
        for candidate in (p / DATASET_FOLDER, p):
            if is_dataset_folder(candidate):
                return candidate
        raise GenemInputError(p, "not a finished genem-relion-simulate job folder or GenEM dataset "
                                 "(no dataset/manifest.json)")
    from genem.simulate import SimulationConfig, StructureSpec, run_simulation

    try:
        d = json.loads(Path(prm.sim_config).read_text())
    except json.JSONDecodeError as e:
        raise GenemInputError(prm.sim_config, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    if job.input("in_3dref") is not None:
        d["structures"] = [StructureSpec(path=str(Path(job.input("in_3dref")).resolve()))]
    cfg = SimulationConfig.from_dict(d)
    out = job.path(SIMULATED_FOLDER)
    run_simulation(cfg, out, device=job.device, progress=job.progress("simulated micrographs"),
                   command_line=[SPEC.name, *sys.argv[1:]])
    return out


def real_micrographs(job: RelionJob) -> tuple[list[str], float | None]:
    """Micrograph paths (relative to the project) and pixel size from the ``--in_mics`` STAR."""
    star = job.input("in_mics")
    blocks = read_star(star)
    mics = blocks.get("micrographs")
    if mics is None or "rlnMicrographName" not in mics.columns:
        raise GenemInputError(star, "no data_micrographs block with rlnMicrographName")
    names = list(mics["rlnMicrographName"])
    for n in names:
        if not Path(n).is_file():
            raise GenemInputError(n, f"micrograph listed in {star} not found")
    px = job.params.real_pixel_size
    if px is None:  # the first micrograph's (NaN, unknown, is not > 0)
        px = next((float(p) for p in star_pixel_sizes_A(blocks.get("optics"), mics, MICROGRAPH_PIXEL_SIZE_COLUMNS)[:1]
                   if p > 0), None)
    return names, px


def run(job: RelionJob) -> None:
    from genem.translate.apply import apply_translator
    from genem.translate.train import MODEL_FILE, TranslateTrainConfig, train_translator

    prm = job.params
    real, real_px = real_micrographs(job)
    sim = simulated_dataset(job)
    model = Path(prm.model) if prm.model is not None else job.path(MODEL_FOLDER)
    if prm.model is None and not (model / MODEL_FILE).exists():
        try:
            given = {k: v for k, v in (("steps", prm.steps), ("tile_px", prm.tile), ("batch_size", prm.batch_size))
                     if v is not None}
            cfg = TranslateTrainConfig(**given, real_pixel_size_A=real_px, max_micrographs=prm.max_micrographs,
                                       seed=prm.seed)
            cfg = cfg.replace(checkpoint_every=max(1, min(500, cfg.steps)), grid_every=max(1, min(500, cfg.steps)))
        except ValueError as e:
            raise GenemInputError("parameters", str(e)) from None
        resume = (model / "config.json").exists()
        job.log(f"training the translator on {len(real)} real micrograph(s) and {sim}: at most {cfg.steps} steps"
                + (" (resuming)" if resume else ""))
        train_translator(cfg, sim, real, model, device=job.device, resume=resume,
                         progress=job.progress("training steps"), command=[SPEC.name, *sys.argv[1:]])
    job.check_abort()
    out = job.path(DATASET_FOLDER)
    n_mics = len(read_star(sim / MICROGRAPHS_STAR)["micrographs"])
    job.log(f"translating {n_mics} simulated micrograph(s) with {model}")
    apply_translator(model, sim, out, device=job.device, progress=job.progress("translated micrographs"),
                     command=[SPEC.name, *sys.argv[1:]])
    job.check_abort()
    nodes = publish_dataset(job, out)
    job.log(f"wrote {nodes['particles'][0]} and {nodes['micrographs'][0]}")


def main(argv=None) -> int:
    return run_program(SPEC, run, argv)


if __name__ == "__main__":
    sys.exit(main())
