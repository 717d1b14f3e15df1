"""Streams micrographs into a GenEM dataset folder: deterministic per-micrograph seeds, shards, resume, merge."""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import genem
from genem.io import dataset as L
from genem.io.dataset import DatasetWriter
from genem.io.errors import GenemInputError
from genem.io.mrc import read_mrc
from genem.io.outputs import check_out_dir, claim_out_dir
from genem.io.star import read_star
from genem.physics.ctf import CTFParams
from genem.physics.detector import read_mtf_star
from genem.physics.ice import estimate_ice_thickness_icebreaker, random_ice_thickness_nm
from genem.physics.projection import FourierProjector
from genem.physics.rotations import sample_uniform_euler_relion
from genem.progress import ProgressCallback, report

from .config import (
    BOX_PER_DIAMETER, DEFAULT_PACKING_FRACTION, DEFAULT_PARTICLES_PER_MICROGRAPH, SimulationConfig, draw,
    max_particles_that_fit,
)
from .extract import extract_boxes, normalise_like_relion
from .imaging import image_micrograph
from .specimen import Specimen, draw_particle_count, place_particles
from .structures import fit_volume_to_box, load_potential


def micrograph_seed(seed: int, index0: int) -> np.random.Generator:
    """The generator of micrograph ``index0``: depends only on (seed, index), so shards reproduce a full run."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index0)]))


def load_potentials(cfg: SimulationConfig) -> list:
    """The potential of every structure of the config, at the simulation pixel size."""
    return [load_potential(s.path, cfg.pixel_size_A, map_pixel_size_A=s.map_pixel_size_A,
                           use_atom_bfactors=s.use_atom_bfactors, solvent_potential_V=cfg.solvent_potential_V)
            for s in cfg.structures]


def resolve_config(cfg: SimulationConfig, *, log=None) -> tuple[SimulationConfig, list]:
    """``(cfg with its automatic defaults filled in, the potentials)``. The box defaults to
    :data:`BOX_PER_DIAMETER` x the structure's diameter; the particle count to
    :data:`DEFAULT_PARTICLES_PER_MICROGRAPH`, or as many as fit (:data:`DEFAULT_PACKING_FRACTION` of the densest
    packing) for a large structure; ``log`` gets one line saying what was chosen. A count or box given that does
    not fit is a GenemInputError."""
    potentials = load_potentials(cfg)
    radius_A = max(p.radius_A for p in potentials)
    size = f"{cfg.micrograph_size_px[1]}x{cfg.micrograph_size_px[0]} px"
    chosen = []
    box = cfg.particle_box_px
    if box is None:
        b = int(np.ceil(BOX_PER_DIAMETER * 2 * radius_A / cfg.pixel_size_A))
        box = max(16, b + b % 2)
        if box > min(cfg.micrograph_size_px):
            raise GenemInputError("simulation config", f"the structure ({2 * radius_A:.0f} A across, a {box} px box) "
                                  f"does not fit on a {size} micrograph: give a larger micrograph_size_px "
                                  "(--micrograph-size) or a coarser pixel_size_A")
        chosen.append(f"a {box} px box")
    separation_px = (cfg.min_separation_A if cfg.min_separation_A is not None else 2 * radius_A) / cfg.pixel_size_A
    margin_px = cfg.edge_margin_px if cfg.edge_margin_px is not None else box // 2
    cap = max_particles_that_fit(cfg.micrograph_size_px, separation_px, margin_px)
    fit = (f"at most {cap} with {separation_px * cfg.pixel_size_A:.0f} A spacing and a {margin_px} px margin on "
           f"{size}")
    n = cfg.particles_per_micrograph
    if n is None:
        n = min(DEFAULT_PARTICLES_PER_MICROGRAPH, int(cap * DEFAULT_PACKING_FRACTION - 2 * cfg.particles_sd))
        if n < 1:
            raise GenemInputError("simulation config", f"the structure does not fit: {fit}; give a "
                                  "larger micrograph_size_px (--micrograph-size) or a coarser pixel_size_A")
        chosen.append(f"{n} particles per micrograph")
    want = n + 2 * cfg.particles_sd
    if want > cap:
        raise GenemInputError("simulation config", f"{want:g} particles per micrograph do not fit: {fit}")
    if chosen and log is not None:
        log(f"chose {' and '.join(chosen)} for a structure {2 * radius_A:.0f} A across "
            "(--particles / --box, or particles_per_micrograph / particle_box_px, to override)")
    return cfg.replace(particle_box_px=box, particles_per_micrograph=n), potentials


class _Prepared:
    """What every micrograph needs: the config with its defaults resolved (:func:`resolve_config`), potentials,
    projectors, orientations table, MTF, ice reference."""

    def __init__(self, cfg: SimulationConfig, device, *, log=None):
        cfg, self.potentials = resolve_config(cfg, log=log)
        self.cfg = cfg
        self.projectors = [FourierProjector(p.volume_V, cfg.pixel_size_A, device=device) for p in self.potentials]
        w = np.array([s.weight for s in cfg.structures], float)
        self.weights = w / w.sum()
        self.radius_A = max(p.radius_A for p in self.potentials)
        self.separation_px = (cfg.min_separation_A if cfg.min_separation_A is not None
                              else 2 * self.radius_A) / cfg.pixel_size_A
        self.margin_px = cfg.edge_margin_px if cfg.edge_margin_px is not None else cfg.particle_box_px // 2
        self.orientations = None
        if cfg.orientations_star:
            b = read_star(cfg.orientations_star)
            df = b.get("particles", next(iter(b.values())))
            cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
            if not all(c in df.columns for c in cols):
                raise GenemInputError(cfg.orientations_star, "needs rlnAngleRot, rlnAngleTilt, rlnAnglePsi")
            self.orientations = df[cols].to_numpy(float)
        self.mtf = read_mtf_star(cfg.detector_mtf) if cfg.detector_mtf else None
        self.ice_reference = None
        if cfg.ice == "estimate":
            img, _ = read_mrc(cfg.ice_reference)
            if img.ndim == 3:
                img = img[0]
            self.ice_reference = img


def _specimen(cfg, prep, rng, shape) -> Specimen:
    n = draw_particle_count(rng, cfg.particles_per_micrograph, cfg.particles_sd)
    x, y = place_particles(rng, n, shape, prep.separation_px, prep.margin_px)
    n = len(x)
    if prep.orientations is not None:
        eul = prep.orientations[rng.integers(0, len(prep.orientations), size=n)]
    else:
        eul = sample_uniform_euler_relion(rng, n)
    struct = rng.choice(len(prep.weights), size=n, p=prep.weights)
    return Specimen(x, y, eul.reshape(n, 3), struct, np.zeros(n))


def _ice_map(cfg, prep, rng, shape, mean_nm):
    if cfg.ice == "none":
        return np.zeros(shape, np.float32)
    if cfg.ice == "estimate":
        from scipy import ndimage

        ref = prep.ice_reference
        t = estimate_ice_thickness_icebreaker(ref, mean_thickness_nm=mean_nm, mfp_nm=cfg.ice_mfp_nm)
        return ndimage.zoom(t, (shape[0] / t.shape[0], shape[1] / t.shape[1]), order=1)[: shape[0], : shape[1]]
    return random_ice_thickness_nm(rng, shape, mean_nm, cfg.ice_thickness_sd_nm,
                                   cfg.ice_correlation_A / cfg.pixel_size_A)


def simulate_micrograph(cfg: SimulationConfig, prep: _Prepared, index0: int):
    """Everything for micrograph ``index0``: images, the micrograph's CTF row and its particles' rows. ``cfg`` is
    read as ``prep.cfg``, its defaults resolved."""
    cfg = prep.cfg
    rng = micrograph_seed(cfg.seed, index0)
    shape = cfg.micrograph_size_px
    defocus = draw(rng, cfg.defocus_A)
    astig = draw(rng, cfg.astigmatism_A)
    mic = dict(defocus_u_A=defocus + astig / 2, defocus_v_A=defocus - astig / 2,
               defocus_angle_deg=draw(rng, cfg.defocus_angle_deg), phase_shift_deg=draw(rng, cfg.phase_shift_deg),
               bfactor_A2=draw(rng, cfg.bfactor_A2))
    dose = draw(rng, cfg.dose_e_per_A2)
    snr = draw(rng, cfg.snr)
    ice_mean = draw(rng, cfg.ice_thickness_nm) if cfg.ice != "none" else 0.0
    ice = _ice_map(cfg, prep, rng, shape, ice_mean)
    spec = _specimen(cfg, prep, rng, shape)
    if cfg.particle_height and cfg.ice != "none" and len(spec.x_px):
        t_A = ice[np.floor(spec.y_px).astype(int), np.floor(spec.x_px).astype(int)] * 10.0
        room = np.clip(t_A / 2 - prep.radius_A, 0, None)
        spec.height_A = rng.uniform(-1, 1, size=len(room)) * room
    optics = dict(voltage_kV=cfg.voltage_kV, cs_mm=cfg.cs_mm, amplitude_contrast=cfg.amplitude_contrast,
                  illumination_semiangle_mrad=cfg.illumination_semiangle_mrad,
                  defocus_spread_A=cfg.defocus_spread_A, beam_tilt_x_mrad=cfg.beam_tilt_x_mrad,
                  beam_tilt_y_mrad=cfg.beam_tilt_y_mrad, odd_zernike=tuple(cfg.odd_zernike),
                  even_zernike=tuple(cfg.even_zernike))
    mic_ctf = CTFParams(**mic, **optics)
    pctf = [CTFParams(**{**mic, "defocus_u_A": mic["defocus_u_A"] + h, "defocus_v_A": mic["defocus_v_A"] + h},
                      **optics) for h in spec.height_A]
    img = image_micrograph(rng, shape=shape, pixel_size_A=cfg.pixel_size_A, projectors=prep.projectors,
                           specimen=spec, mic_ctf=mic_ctf, particle_ctfs=pctf, ice_nm=ice,
                           ice_mfp_nm=cfg.ice_mfp_nm, ice_phase_sd_rad_per_sqrt_nm=cfg.ice_phase_sd_rad_per_sqrt_nm
                           if cfg.ice != "none" else 0.0, noise_mode=cfg.noise_mode, dose_e_per_A2=dose, snr=snr,
                           mtf=prep.mtf)
    stem = L.micrograph_stem(index0)
    mic_name = L.micrograph_name(stem)
    mic_row = {"rlnMicrographName": mic_name, "rlnOpticsGroup": 1,
               "rlnDefocusU": mic["defocus_u_A"], "rlnDefocusV": mic["defocus_v_A"],
               "rlnCtfAstigmatism": abs(mic["defocus_u_A"] - mic["defocus_v_A"]),
               "rlnDefocusAngle": mic["defocus_angle_deg"], "rlnPhaseShift": mic["phase_shift_deg"],
               "rlnCtfBfactor": mic["bfactor_A2"], "rlnCtfScalefactor": 1.0,
               "rlnGenemIceThicknessNm": float(ice.mean()), "rlnGenemDoseEPerA2": dose if cfg.noise_mode == "poisson" else 0.0,
               "rlnGenemSnr": _recorded_snr(cfg.noise_mode, snr, img), "rlnGenemNoiseSd": img.noise_sd,
               "rlnGenemNumberOfParticles": int(len(spec.x_px))}
    parts = []
    ix = np.floor(spec.x_px).astype(int)
    iy = np.floor(spec.y_px).astype(int)
    for k in range(len(spec.x_px)):
        parts.append({
            "rlnImageName": L.particle_image_name(k, stem),
            L.CLEAN_IMAGE_COLUMN: L.particle_image_name(k, stem, clean=True),
            "rlnMicrographName": mic_name,
            "rlnCoordinateX": float(spec.x_px[k]), "rlnCoordinateY": float(spec.y_px[k]),
            "rlnAngleRot": float(spec.euler_deg[k, 0]), "rlnAngleTilt": float(spec.euler_deg[k, 1]),
            "rlnAnglePsi": float(spec.euler_deg[k, 2]),
            # origin = -(offset of the particle centre from the box centre), in A
            "rlnOriginXAngst": -float(spec.x_px[k] - ix[k]) * cfg.pixel_size_A,
            "rlnOriginYAngst": -float(spec.y_px[k] - iy[k]) * cfg.pixel_size_A,
            "rlnDefocusU": pctf[k].defocus_u_A, "rlnDefocusV": pctf[k].defocus_v_A,
            "rlnDefocusAngle": mic["defocus_angle_deg"], "rlnPhaseShift": mic["phase_shift_deg"],
            "rlnCtfBfactor": mic["bfactor_A2"], "rlnCtfScalefactor": 1.0, "rlnOpticsGroup": 1,
            "rlnClassNumber": int(spec.structure[k]) + 1, "rlnGenemHeightA": float(spec.height_A[k]),
            "rlnRandomSubset": int(k % 2) + 1,
        })
    return img, mic_row, parts, spec


def _write_micrograph(out: DatasetWriter, cfg: SimulationConfig, index0: int, img, mic_row, parts, spec) -> None:
    stem = L.micrograph_stem(index0)
    px = cfg.pixel_size_A
    out.write_micrograph(stem, img.noisy, px)
    out.write_micrograph(stem, img.clean, px, "clean")
    out.write_micrograph(stem, img.mask, px, "mask", dtype=np.uint16)
    out.write_micrograph(stem, img.ice_nm, px, "ice")
    coords = pd.DataFrame({
        "rlnCoordinateX": spec.x_px, "rlnCoordinateY": spec.y_px, "rlnAngleRot": spec.euler_deg[:, 0],
        "rlnAngleTilt": spec.euler_deg[:, 1], "rlnAnglePsi": spec.euler_deg[:, 2],
        "rlnClassNumber": spec.structure + 1, "rlnAutopickFigureOfMerit": np.ones(len(spec.x_px)),
    })
    out.write_coordinates(stem, coords)
    if len(parts):
        b = cfg.particle_box_px
        noisy = extract_boxes(img.noisy, spec.x_px, spec.y_px, b)
        clean = extract_boxes(img.clean, spec.x_px, spec.y_px, b)
        # noise-free data: one scale for all particles (the micrograph's sd), not each box's empty background
        sd = float(img.noisy.std()) if cfg.noise_mode == "none" else None
        noisy, clean = normalise_like_relion(noisy, clean, sd=sd)
        out.write_particle_stack(stem, noisy, px)
        out.write_particle_stack(stem, clean, px, clean=True)
    # the completion record goes last: a micrograph counts as done only when it exists
    out.write_record(stem, {"micrograph": mic_row, "particles": parts})


def _optics(cfg: SimulationConfig, *, particles: bool) -> pd.DataFrame:
    d = {"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
         "rlnMicrographOriginalPixelSize": [cfg.pixel_size_A], "rlnVoltage": [cfg.voltage_kV],
         "rlnSphericalAberration": [cfg.cs_mm], "rlnAmplitudeContrast": [cfg.amplitude_contrast]}
    if cfg.beam_tilt_x_mrad or cfg.beam_tilt_y_mrad:
        d["rlnBeamTiltX"], d["rlnBeamTiltY"] = [cfg.beam_tilt_x_mrad], [cfg.beam_tilt_y_mrad]
    if cfg.odd_zernike:
        d["rlnOddZernike"] = ["[" + ",".join(f"{v:g}" for v in cfg.odd_zernike) + "]"]
    if cfg.even_zernike:
        d["rlnEvenZernike"] = ["[" + ",".join(f"{v:g}" for v in cfg.even_zernike) + "]"]
    if particles:
        d.update({"rlnImagePixelSize": [cfg.pixel_size_A], "rlnImageSize": [cfg.particle_box_px],
                  "rlnImageDimensionality": [2]})
    else:
        d["rlnMicrographPixelSize"] = [cfg.pixel_size_A]
    return pd.DataFrame(d)


def write_dataset_tables(root: Path, cfg: SimulationConfig, mic_rows: list, part_rows: list) -> None:
    """micrographs.star, particles.star and particles.cs from per-micrograph rows."""
    DatasetWriter(root).write_tables(
        {"optics": _optics(cfg, particles=False), "micrographs": pd.DataFrame(mic_rows)},
        {"optics": _optics(cfg, particles=True), "particles": pd.DataFrame(part_rows)})


def _finalize(out: DatasetWriter, cfg: SimulationConfig, command_line, started: float) -> None:
    mic_rows, part_rows, seeds = [], [], []
    for i in range(cfg.n_micrographs):
        rec = out.read_record(L.micrograph_stem(i))
        mic_rows.append(rec["micrograph"])
        part_rows.extend(rec["particles"])
        seeds.append([cfg.seed, i])
    potentials = load_potentials(cfg)
    gt_maps = [out.write_ground_truth(k, pot.volume_V, cfg.pixel_size_A) for k, pot in enumerate(potentials)]
    gt_boxed = [out.write_ground_truth(k, fit_volume_to_box(pot.volume_V, cfg.particle_box_px), cfg.pixel_size_A,
                                       particle_box=True) for k, pot in enumerate(potentials)]
    write_dataset_tables(out.root, cfg, mic_rows, part_rows)
    try:
        from .preview import write_preview

        first = mic_rows[0]["rlnMicrographName"]
        write_preview(out.root, L.micrograph_stem(0), [r for r in part_rows if r["rlnMicrographName"] == first],
                      max(p.radius_A for p in potentials) / cfg.pixel_size_A)
    except Exception as e:  # a preview must never sink a finished dataset
        print(f"genem: warning: preview not written ({e})", file=sys.stderr)
    manifest = {
        "kind": "genem-simulation", "genem_version": genem.__version__, "config": cfg.to_dict(),
        "micrograph_seeds": {"rule": "numpy SeedSequence([seed, micrograph_index0])", "seeds": seeds},
        "ground_truth_maps": gt_maps, "ground_truth_maps_particle_box": gt_boxed,
        "n_micrographs": cfg.n_micrographs, "n_particles": len(part_rows),
        "command_line": command_line if command_line is not None else sys.argv,
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__},
        "wall_time_s_last_shard": round(time.time() - started, 2),
    }
    out.write_manifest(manifest)


def _recorded_snr(noise_mode: str, snr: float, img) -> float:
    """The SNR written to micrographs.star: the target in snr mode; in poisson mode the particle signal variance
    (inside the masks) over the shot-noise variance at the mean count (ice phase noise and MTF left out)."""
    if noise_mode == "snr":
        return float(snr)
    if noise_mode == "poisson" and img.noise_sd > 0:
        return float(img.particle_signal_var / img.noise_sd ** 2)
    return 0.0


SIMULATE_COMMAND = "genem simulate"


SIMULATE_OWN = dict(markers=(f"{L.PARTS_DIR}/config.json",), own_names=(L.PARTS_DIR,))  # its records: resumable


def run_simulation(config: SimulationConfig, out_dir, *, shard: tuple = (0, 1), device: str = "cpu",
                   progress: ProgressCallback | None = None, command_line=None, log=None) -> Path:
    """Simulate into ``out_dir``; returns the folder. Shard ``(i, n)`` does micrographs with index % n == i; the
    shard that completes the set writes the tables and the manifest (the completion mark). Re-running resumes.
    ``log`` (a callable taking one line) hears which defaults were chosen for the structure."""
    started = time.time()
    cfg = config
    i_shard, n_shard = shard
    if not (0 <= i_shard < n_shard):
        raise GenemInputError("--shard", f"must be i/n with 0 <= i < n, got {i_shard}/{n_shard}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GenemInputError("--device", "CUDA requested but not available")
    check_out_dir(out_dir, SIMULATE_COMMAND, **SIMULATE_OWN)
    prep = _Prepared(cfg, device, log=log)  # validates every input before anything is written
    cfg = prep.cfg
    root = claim_out_dir(out_dir, SIMULATE_COMMAND, **SIMULATE_OWN)
    out = DatasetWriter(root)
    if out.has_record("config"):
        if out.read_record("config") != json.loads(json.dumps(cfg.to_dict())):
            raise GenemInputError(root, "holds a simulation with other parameters; choose a new output folder")
    else:
        out.write_record("config", cfg.to_dict())
    out.prepare()
    mine = range(i_shard, cfg.n_micrographs, n_shard)
    todo = [i for i in mine if not out.has_record(L.micrograph_stem(i))]
    report(progress, "simulate", len(mine) - len(todo), len(mine), "mic")
    with torch.inference_mode():
        for k, i in enumerate(todo):
            img, mic_row, parts, spec = simulate_micrograph(cfg, prep, i)
            _write_micrograph(out, cfg, i, img, mic_row, parts, spec)
            report(progress, "simulate", len(mine) - len(todo) + k + 1, len(mine), "mic")
    if all(out.has_record(L.micrograph_stem(i)) for i in range(cfg.n_micrographs)):
        _finalize(out, cfg, command_line, started)
    return root


def merge_shards(out_dir, *, command_line=None) -> Path:
    """The merge step of a sharded run (a cluster's last job, after every shard): write the tables and the
    manifest of ``out_dir`` from its micrographs' completion records, with the configuration recorded there. It
    simulates nothing and refuses, naming them, while micrographs are missing. Shards may have finished in any
    order or been rerun, and the merge may run again: every file is byte-reproducible, so whoever writes the tables
    (the last shard to finish, or this step) writes the same bytes."""
    started = time.time()
    root = Path(out_dir)
    out = DatasetWriter(root)
    if not out.has_record("config"):
        raise GenemInputError(root, f"holds no sharded simulation ({L.PARTS_DIR}/config.json missing)")
    cfg = SimulationConfig.from_dict(out.read_record("config"), out.record_path("config"))
    missing = [i for i in range(cfg.n_micrographs) if not out.has_record(L.micrograph_stem(i))]
    if missing:
        shown = ", ".join(str(i) for i in missing[:8]) + (", ..." if len(missing) > 8 else "")
        raise GenemInputError(root, f"{len(missing)} of {cfg.n_micrographs} micrographs not done yet (index {shown}); "
                                    "run their shards first")
    claim_out_dir(root, SIMULATE_COMMAND, **SIMULATE_OWN)
    out.prepare()
    _finalize(out, cfg, command_line, started)
    return root
