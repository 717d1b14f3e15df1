"""Training pairs of the user's own specimen, for fine-tuning a denoiser on it in one command
(``genem denoise train --init default --structure MAP_OR_MODEL --like PARTICLES``).

On an unseen structure the shipped model gains little over a low-pass at SNR ~0.05; fine-tuned on simulations
of the specimen (even a 20 A low-pass of its map) it gains over 1 dB (docs/denoise.md). This module turns the
particles to be denoised into the simulation that makes those pairs: their optics (voltage, Cs, amplitude
contrast) and the spread of their defoci and astigmatism, at the geometry (pixel size, box) of the model being
fine-tuned, with Poisson noise over a range of doses that spans low-dose particle SNRs.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from genem.io import GenemInputError, read_particle_ctf_table, write_json_atomic
from genem.progress import ProgressCallback
from genem.simulate.config import SimulationConfig, StructureSpec, range_bounds

from .train import claim_model_folder

#: the dose range (e/A^2) of the simulated training micrographs: whole-box particle SNR about 0.01-0.1
SPECIMEN_DOSE_E_PER_A2 = (2.0, 20.0)
PARTICLES_PER_MICROGRAPH = 120
#: micrograph side in particle boxes: 120 particles cover 12% of a 32 x 32-box micrograph (2048 px at box 64)
MICROGRAPH_SIDE_BOXES = 32


def imaging_conditions(rows: pd.DataFrame, source="particles", percentile: float = 2.0) -> dict:
    """Simulation fields that match a particle set: its voltage, Cs and amplitude contrast (medians), the central
    (100 - 2 * percentile) % of its mean defoci and the astigmatism up to the (100 - percentile)-th percentile."""
    def num(col):
        v = pd.to_numeric(rows[col], errors="coerce").to_numpy(np.float64)
        if not np.all(np.isfinite(v)):
            raise GenemInputError(source, f"non-numeric {col} values")
        return v

    kv = np.unique(np.round(num("rlnVoltage"), 1))
    if len(kv) != 1:
        raise GenemInputError(source, f"particles of several voltages ({', '.join(f'{v:g}' for v in kv)} kV): "
                                      "fine-tune on one voltage at a time")
    du, dv = num("rlnDefocusU"), num("rlnDefocusV")
    mean = (du + dv) / 2
    lo, hi = (float(v) for v in np.percentile(mean, [percentile, 100 - percentile]))
    astig = float(np.percentile(np.abs(du - dv), 100 - percentile))
    if lo - astig / 2 <= 0:
        raise GenemInputError(source, f"defocus {lo:.0f} A is too close to focus for its astigmatism {astig:.0f} A "
                                      "(are rlnDefocusU/V in A, underfocus positive?)")
    return {"voltage_kV": float(kv[0]), "cs_mm": float(np.median(num("rlnSphericalAberration"))),
            "amplitude_contrast": float(np.median(num("rlnAmplitudeContrast"))),
            "defocus_A": (lo, hi) if hi > lo else lo, "astigmatism_A": (0.0, astig) if astig > 0 else 0.0}


def specimen_simulation_config(structure, conditions: dict, *, pixel_size_A: float, box_px: int, n_particles: int,
                               map_pixel_size_A: float | None = None, seed: int = 0) -> SimulationConfig:
    """The simulation of ``n_particles`` training particles of ``structure`` (map or atomic model) under
    ``conditions`` (:func:`imaging_conditions`), at a model's pixel size and box."""
    if n_particles < 1:
        raise GenemInputError("arguments", "the number of simulated particles must be >= 1")
    return SimulationConfig(
        n_micrographs=math.ceil(n_particles / PARTICLES_PER_MICROGRAPH),
        micrograph_size_px=(MICROGRAPH_SIDE_BOXES * box_px,) * 2, pixel_size_A=pixel_size_A,
        particle_box_px=box_px, particles_per_micrograph=min(PARTICLES_PER_MICROGRAPH, n_particles),
        structures=(StructureSpec(path=str(Path(structure).resolve()), map_pixel_size_A=map_pixel_size_A),),
        noise_mode="poisson", dose_e_per_A2=SPECIMEN_DOSE_E_PER_A2, seed=seed, **conditions)


def simulate_specimen_pairs(structure, like, model_dir, model, *, n_particles: int = 3600,
                            map_pixel_size_A: float | None = None, seed: int = 0,
                            progress: ProgressCallback | None = None,
                            command_line=None) -> Path:
    """Simulate training pairs of ``structure`` as the ``like`` particles were imaged, at ``model``'s pixel size and
    box, into ``model_dir/specimen_data`` (a GenEM dataset folder; a rerun finishes an interrupted simulation),
    and record the configuration in ``model_dir/specimen_simulation.json``; returns the dataset folder."""
    from genem.simulate import run_simulation

    if not Path(structure).exists():
        raise GenemInputError(structure, "structure file not found")
    conditions = imaging_conditions(read_particle_ctf_table(like), source=like)
    sim = specimen_simulation_config(structure, conditions, pixel_size_A=model.pixel_size_A, box_px=model.box_px,
                                     n_particles=n_particles, map_pixel_size_A=map_pixel_size_A, seed=seed)
    model_dir = claim_model_folder(model_dir)
    lo, hi = range_bounds(conditions["defocus_A"])
    print(f"genem denoise: simulating {n_particles} particles of {structure} at {conditions['voltage_kV']:g} kV, "
          f"defocus {lo:.0f}-{hi:.0f} A, into {model_dir / 'specimen_data'}", file=sys.stderr)
    data = run_simulation(sim, model_dir / "specimen_data", progress=progress, command_line=command_line)
    write_json_atomic(model_dir / "specimen_simulation.json",
                      {"structure": str(Path(structure).resolve()), "like": str(Path(like).resolve()),
                       "imaging_conditions": conditions, "simulation_config": sim.to_dict()})
    return data
