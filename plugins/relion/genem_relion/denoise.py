"""``genem-relion-denoise``: a RELION External job that denoises particles (or micrographs) with GenEM's
diffusion denoiser.

Input: ``--in_parts`` a particles STAR (from Extract, Select, Class2D...) or ``--in_mics`` a micrographs STAR.
Output: ``particles_denoised.star`` (or ``<name>_denoised.star`` for micrographs): the input table with every
other column kept, rlnImageName / rlnMicrographName pointing at the denoised images in ``Denoised/``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from genem.io import GenemInputError

from .arguments import Param, ProgramSpec
from .lifecycle import RelionJob
from .supervisor import run_program

SPEC = ProgramSpec(
    name="genem-relion-denoise",
    module="genem_relion.denoise",
    description="Denoise particles or micrographs with GenEM's diffusion denoiser; the output STAR keeps every "
                "column of the input, with image names pointing at the denoised images.",
    inputs={"in_parts": "particles STAR to denoise", "in_mics": "or: micrographs STAR to denoise"},
    required_inputs=(("in_parts", "in_mics"),),
    params=(
        Param("model", "str", None, "trained denoiser (a model folder from 'genem denoise train', or its model.pt); "
                                    "default: the model shipped with GenEM"),
        Param("steps", "int", None, "diffusion (DDIM) steps; default: the model's", minimum=1),
        Param("samples", "int", 1, "average this many diffusion samples per image", minimum=1),
        Param("postprocess", "bool", True, "apply the model's post-processing network (yes/no)"),
        Param("batch_size", "int", 64, "images per batch", minimum=1),
        Param("pixel_size", "float", None, "override the input pixel size (A)", minimum=0),
        Param("tile", "int", 512, "micrograph tile in pixels at the model's pixel size", minimum=32),
        Param("seed", "int", 0, "random seed (the same seed gives the same output)"),
    ),
)


def engine_available() -> bool:
    """Whether the engine's denoiser (genem.restore.apply) is installed."""
    import importlib.util

    return importlib.util.find_spec("genem.restore.apply") is not None


def run(job: RelionJob) -> None:
    parts, mics = job.input("in_parts"), job.input("in_mics")
    if parts is not None and mics is not None:
        raise GenemInputError("inputs", "give --in_parts (particles) or --in_mics (micrographs), not both")
    if not engine_available():
        raise GenemInputError("genem.restore", "the GenEM denoiser is not installed in this Python environment")
    from genem.restore.apply import denoise_micrographs, denoise_particles
    from genem.restore.model import Denoiser

    prm = job.params
    if prm.model is not None and not Path(prm.model).exists():
        raise GenemInputError(prm.model, "denoiser model not found (paths are relative to the project directory)")
    model = Denoiser.load(prm.model, device=job.device)
    kw = dict(steps=prm.steps, n_samples=prm.samples, postprocess=prm.postprocess, seed=prm.seed,
              root=Path.cwd(), pixel_size_A=prm.pixel_size, progress=job.progress())
    out_dir = job.out_dir
    if parts is not None:
        job.log(f"denoising the particles of {parts} on {job.device}")
        out = denoise_particles(parts, out_dir, model, batch_size=prm.batch_size, **kw)
        kind = "particles"
    else:
        job.log(f"denoising the micrographs of {mics} on {job.device}")
        out = denoise_micrographs(mics, out_dir, model, tile=prm.tile, **kw)
        kind = "micrographs"
    job.add_node(Path(out), kind)
    job.log(f"wrote {out}")


def main(argv=None) -> int:
    return run_program(SPEC, run, argv)


if __name__ == "__main__":
    sys.exit(main())
