"""``genem simulate``: a virtual specimen imaged with exact ground truth, written as a GenEM dataset folder."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from genem.io.dataset import DatasetWriter
from genem.io.errors import GenemInputError

from .defaults import add_config_flags, given_fields
from .progress import add_progress_flag, progress_from_args


def _range(text: str):
    parts = [p for p in text.replace(":", ",").split(",") if p.strip()]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"not a number or a low,high range: {text!r}") from None
    if len(vals) == 1:
        return vals[0]
    if len(vals) == 2:
        return (vals[0], vals[1])
    raise ValueError(f"give one number or low,high: {text!r}")


def _size(text: str):
    parts = text.lower().replace("x", ",").split(",")
    vals = [int(p) for p in parts]
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])


def _shard(text: str):
    i, n = text.split("/")
    return int(i), int(n)


# (flag, config field, type, help)
OPTIONS = [
    ("--n-micrographs", "n_micrographs", int, "number of micrographs"),
    ("--micrograph-size", "micrograph_size_px", _size, "micrograph size in pixels: N or ROWSxCOLS"),
    ("--pixel-size-A", "pixel_size_A", float, "pixel size of the simulation"),
    ("--box", "particle_box_px", int, "extraction box (px, even) (default: 1.75x the structure's diameter)"),
    ("--particles", "particles_per_micrograph", int, "particles per micrograph (the mean with --particles-sd) "
     "(default: 40, fewer when a large structure does not fit; the run says how many)"),
    ("--particles-sd", "particles_sd", float, "standard deviation of the particle count (0 = fixed)"),
    ("--min-separation-A", "min_separation_A", float, "minimum distance between particle centres (A) "
     "(default: the structure's diameter)"),
    ("--edge-margin-px", "edge_margin_px", int, "margin between particle centres and the edge (px) "
     "(default: half the box)"),
    ("--orientations", "orientations_star", str, "STAR file with rlnAngleRot/Tilt/Psi to draw poses from "
     "(default: none: uniform over all orientations)"),
    ("--ice", "ice", str, "ice model: random | none | estimate"),
    ("--ice-reference", "ice_reference", str, "real micrograph for --ice estimate (Icebreaker-style)"),
    ("--ice-thickness-nm", "ice_thickness_nm", _range, "mean ice thickness, or low,high per micrograph"),
    ("--ice-mfp-nm", "ice_mfp_nm", float, "inelastic mean free path in ice"),
    ("--solvent-potential-V", "solvent_potential_V", float, "ice potential displaced by an atomic model (V; 0 = vacuum)"),
    ("--voltage-kV", "voltage_kV", float, "acceleration voltage"),
    ("--cs-mm", "cs_mm", float, "spherical aberration"),
    ("--amplitude-contrast", "amplitude_contrast", float, "amplitude contrast fraction Q0"),
    ("--defocus-A", "defocus_A", _range, "defocus (underfocus positive), or low,high"),
    ("--astigmatism-A", "astigmatism_A", _range, "astigmatism U-V, or low,high"),
    ("--defocus-angle-deg", "defocus_angle_deg", _range, "astigmatism angle, or low,high"),
    ("--phase-shift-deg", "phase_shift_deg", _range, "phase-plate shift, or low,high"),
    ("--bfactor-A2", "bfactor_A2", _range, "CTF B-factor envelope, or low,high"),
    ("--illumination-semiangle-mrad", "illumination_semiangle_mrad", float, "illumination semi-angle"),
    ("--defocus-spread-A", "defocus_spread_A", float, "defocus spread Cc*dE/E: temporal coherence"),
    ("--beam-tilt-x-mrad", "beam_tilt_x_mrad", float, "beam tilt x"),
    ("--beam-tilt-y-mrad", "beam_tilt_y_mrad", float, "beam tilt y"),
    ("--noise-mode", "noise_mode", str, "poisson (dose + shot noise) | snr (Gaussian at a target SNR) | none"),
    ("--dose", "dose_e_per_A2", _range, "electron dose, or low,high"),
    ("--snr", "snr", _range, "target SNR in snr mode, or low,high"),
    ("--detector-mtf", "detector_mtf", str, "detector MTF as a RELION MTF STAR file (default: none: a "
     "perfect detector)"),
    ("--seed", "seed", int, "random seed"),
]


def add_parser(sub):
    p = sub.add_parser("simulate", help="simulate annotated micrographs and particles",
                       description="Simulate micrographs of a virtual specimen with exact ground truth. "
                                   "Ranges are 'low,high' and drawn per micrograph.")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--config", help="JSON file of SimulationConfig fields (flags override it)")
    p.add_argument("--structure", action="append", default=None,
                   help="density map (.mrc/.map) or atomic model (.pdb/.cif), optionally PATH:WEIGHT; repeat for a mixture "
                        "(default: GenEM's built-in structure)")
    p.add_argument("--map-pixel-size-A", type=float, help="pixel size of maps whose header has none "
                   "(default: the map header's)")
    p.add_argument("--no-particle-height", action="store_true", help="all particles at the micrograph's defocus")
    from genem.simulate import SimulationConfig

    add_config_flags(p, SimulationConfig, OPTIONS)
    p.add_argument("--shard", type=_shard, default=(0, 1), help="i/n: do micrographs with index %% n == i "
                   "(default: 0/1, all)")
    p.add_argument("--merge", action="store_true",
                   help="only merge a sharded run in --out: write the tables once every shard is done (the last step "
                        "of a cluster run; simulates nothing, takes the configuration recorded in --out)")
    p.add_argument("--emit-slurm", metavar="SCRIPT",
                   help="simulate nothing; write SCRIPT, which submits --shards array tasks and the merge with sbatch "
                        "(docs/scale.md), and the configuration beside it")
    p.add_argument("--shards", type=int, help="array tasks of --emit-slurm (default: none)")
    p.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                   help="an #SBATCH option for the jobs of --emit-slurm, e.g. --sbatch=--partition=gpu (repeatable)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    add_progress_flag(p)
    p.set_defaults(func=run)
    return p


def config_from_args(args):
    from genem.simulate import SimulationConfig, StructureSpec

    base = {}
    if args.config:
        path = Path(args.config)
        if not path.exists():
            raise GenemInputError(path, "config file not found")
        try:
            base = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise GenemInputError(path, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    base.update(given_fields(args, OPTIONS))
    if args.structure:
        specs = []
        for s in args.structure:
            path, weight = s, 1.0
            if ":" in s and s.rsplit(":", 1)[1].replace(".", "", 1).isdigit():
                path, weight = s.rsplit(":", 1)[0], float(s.rsplit(":", 1)[1])
            specs.append(StructureSpec(path=str(Path(path).resolve()), weight=weight,
                                       map_pixel_size_A=args.map_pixel_size_A))
        base["structures"] = specs
    if args.no_particle_height:
        base["particle_height"] = False
    return SimulationConfig.from_dict(base, args.config)


def run(args) -> int:
    from genem.simulate import merge_shards, run_simulation

    if args.merge:
        if args.config or args.structure or given_fields(args, OPTIONS) or args.emit_slurm or args.shard != (0, 1):
            raise GenemInputError("--merge", "takes only --out: the configuration is the one recorded there")
        print(f"genem simulate: wrote {merge_shards(args.out, command_line=['genem'] + sys.argv[1:])}")
        return 0
    cfg = config_from_args(args)
    if args.emit_slurm:
        from .slurm import write_slurm_script

        if not args.shards or args.shards < 1:
            raise GenemInputError("--shards", "--emit-slurm needs the number of array tasks (>= 1)")
        script = write_slurm_script(args.emit_slurm, cfg, args.out, args.shards, device=args.device,
                                    sbatch=args.sbatch)
        print(f"genem simulate: wrote {script}; submit it with: bash {script}")
        return 0
    root = run_simulation(cfg, args.out, shard=args.shard, device=args.device, progress=progress_from_args(args),
                          command_line=["genem"] + sys.argv[1:], log=lambda line: print(f"genem simulate: {line}"))
    if DatasetWriter(root).is_complete:
        print(f"genem simulate: wrote {root}")
    else:
        print(f"genem simulate: shard {args.shard[0]}/{args.shard[1]} done; the last shard to finish writes the tables")
    return 0
