"""Simulation configuration: one frozen, validated object with every physical parameter and its unit.

A parameter typed ``Range`` is either a number or a ``(low, high)`` pair drawn uniformly per micrograph.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from genem.config import Config
from genem.io.errors import GenemInputError

Range = Union[float, tuple]

DEFAULT_STRUCTURE = Path(__file__).resolve().parents[1] / "data" / "default_structure.pdb"
#: particles per micrograph when not given, if they fit (:func:`genem.simulate.pipeline.resolve_config`)
DEFAULT_PARTICLES_PER_MICROGRAPH = 40
#: without a count given, a structure too large for the default gets this fraction of the densest packing
#: (random placement jams at ~60% of it)
DEFAULT_PACKING_FRACTION = 0.5
#: the box when not given: this many times the structure's diameter (RELION advises 1.5-2x; the built-in
#: structure gets 128 px at 1.5 A/px)
BOX_PER_DIAMETER = 1.75


def range_bounds(r: Range) -> tuple[float, float]:
    if isinstance(r, (list, tuple)):
        if len(r) != 2:
            raise ValueError(f"a range needs two numbers, got {r!r}")
        return float(r[0]), float(r[1])
    return float(r), float(r)


def draw(rng, r: Range) -> float:
    lo, hi = range_bounds(r)
    return lo if lo == hi else float(rng.uniform(lo, hi))


@dataclass(frozen=True)
class StructureSpec(Config):
    """One structure (density map or atomic model) and its mixing weight."""

    config_name = "structure"

    path: str = str(DEFAULT_STRUCTURE)
    weight: float = 1.0
    map_pixel_size_A: float | None = None  # for maps whose header lacks one
    use_atom_bfactors: bool = False


@dataclass(frozen=True)
class SimulationConfig(Config):
    config_name = "simulation config"

    # dataset size and sampling
    n_micrographs: int = 4
    micrograph_size_px: tuple = (1024, 1024)  # (rows, columns)
    pixel_size_A: float = 1.5
    particle_box_px: int | None = None  # default: BOX_PER_DIAMETER x the structure's diameter
    structures: tuple = field(default_factory=lambda: (StructureSpec(),))
    # virtual specimen
    particles_per_micrograph: int | None = None  # default: DEFAULT_PARTICLES_PER_MICROGRAPH, fewer if they do not fit
    particles_sd: float = 0.0  # GenEM draws N ~ round(Normal(mean, sd)); 0 = fixed
    min_separation_A: float | None = None  # default: the structure's diameter
    edge_margin_px: int | None = None  # default: half the particle box
    orientations_star: str | None = None  # take rlnAngleRot/Tilt/Psi from this STAR instead of uniform SO(3)
    particle_height: bool = True  # per-particle height in the ice -> defocus offset
    # ice
    ice: str = "random"  # random | none | estimate (Icebreaker-style from ice_reference)
    ice_thickness_nm: Range = (30.0, 60.0)
    ice_thickness_sd_nm: float = 5.0
    ice_correlation_A: float = 500.0
    ice_reference: str | None = None  # a real micrograph for ice="estimate"
    ice_mfp_nm: float = 350.0
    ice_phase_sd_rad_per_sqrt_nm: float = 0.01
    solvent_potential_V: float = 4.5  # mean inner potential of the ice an atomic model displaces (0 = in vacuum)
    # optics and CTF
    voltage_kV: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    defocus_A: Range = (8000.0, 25000.0)
    astigmatism_A: Range = (0.0, 400.0)  # (U - V)
    defocus_angle_deg: Range = (0.0, 180.0)
    phase_shift_deg: Range = 0.0
    bfactor_A2: Range = 0.0
    illumination_semiangle_mrad: float = 0.01
    defocus_spread_A: float = 0.0
    beam_tilt_x_mrad: float = 0.0  # optics-group level, as in RELION
    beam_tilt_y_mrad: float = 0.0
    odd_zernike: tuple = ()
    even_zernike: tuple = ()
    # dose, detector, noise
    noise_mode: str = "poisson"  # poisson (dose + shot noise) | snr (GenEM simple Gaussian mode) | none
    dose_e_per_A2: Range = 40.0
    snr: Range = 0.1
    detector_mtf: str | None = None  # a RELION MTF STAR file
    # bookkeeping
    seed: int = 0
    write_clean_particles: bool = True

    def __post_init__(self):
        def bad(problem):
            raise GenemInputError("simulation config", problem)

        if self.n_micrographs < 1:
            bad("n_micrographs must be >= 1")
        ms = tuple(int(x) for x in (self.micrograph_size_px if isinstance(self.micrograph_size_px, (tuple, list))
                                    else (self.micrograph_size_px, self.micrograph_size_px)))
        object.__setattr__(self, "micrograph_size_px", ms)
        if min(ms) < 32:
            bad("micrograph_size_px must be >= 32")
        if not (math.isfinite(self.pixel_size_A) and self.pixel_size_A > 0):
            bad(f"pixel_size_A must be a positive number, got {self.pixel_size_A}")
        if self.particle_box_px is not None:
            if self.particle_box_px < 16 or self.particle_box_px % 2:
                bad("particle_box_px must be even and >= 16")
            if self.particle_box_px > min(ms):
                bad("particle_box_px is larger than the micrograph")
        structs = tuple(s if isinstance(s, StructureSpec) else StructureSpec.from_dict(s) if isinstance(s, dict)
                        else StructureSpec(path=str(s)) for s in self.structures)
        object.__setattr__(self, "structures", structs)
        if not structs:
            bad("at least one structure is needed")
        if any(s.weight < 0 for s in structs) or sum(s.weight for s in structs) <= 0:
            bad("structure weights must be >= 0 and not all zero")
        if (self.particles_per_micrograph or 0) < 0 or self.particles_sd < 0:
            bad("particles_per_micrograph and particles_sd must be >= 0")
        if self.noise_mode not in ("poisson", "snr", "none"):
            bad(f"noise_mode must be poisson, snr or none, not {self.noise_mode!r}")
        if self.ice not in ("random", "none", "estimate"):
            bad(f"ice must be random, none or estimate, not {self.ice!r}")
        if self.ice == "estimate" and not self.ice_reference:
            bad("ice='estimate' needs ice_reference (a real micrograph)")
        for name in ("defocus_A", "astigmatism_A", "ice_thickness_nm", "dose_e_per_A2", "snr", "bfactor_A2",
                     "defocus_angle_deg", "phase_shift_deg"):
            v = getattr(self, name)
            try:
                lo, hi = range_bounds(v)
            except (TypeError, ValueError):
                bad(f"{name} must be a number or a (low, high) pair, got {v!r}")
            if isinstance(v, list):
                object.__setattr__(self, name, (lo, hi))
            if hi < lo:
                bad(f"{name} range is reversed ({lo} > {hi})")
            if name in ("defocus_A", "astigmatism_A", "ice_thickness_nm", "dose_e_per_A2") and lo < 0:
                bad(f"{name} must be >= 0, got {v!r}")
        if range_bounds(self.snr)[0] <= 0:
            bad(f"snr must be > 0, got {self.snr!r}")
        if self.noise_mode == "poisson" and range_bounds(self.dose_e_per_A2)[0] <= 0:
            bad("dose_e_per_A2 must be > 0 in poisson mode")
        if range_bounds(self.defocus_A)[0] - range_bounds(self.astigmatism_A)[1] / 2 < 0:
            bad("defocus_A minus half the astigmatism must stay >= 0 (underfocus positive)")
        if not 0 <= self.amplitude_contrast < 1:
            bad("amplitude_contrast must be in [0, 1)")
        if self.voltage_kV <= 0 or self.ice_mfp_nm <= 0:
            bad("voltage_kV and ice_mfp_nm must be > 0")


def max_particles_that_fit(shape_px, separation_px: float, margin_px: float) -> int:
    """Upper bound on disks of diameter ``separation_px`` in the usable area (hexagonal packing)."""
    h, w = shape_px[0] - 2 * margin_px, shape_px[1] - 2 * margin_px
    if h <= 0 or w <= 0:
        return 0
    return int(h * w / (math.sqrt(3) / 2 * separation_px ** 2))
