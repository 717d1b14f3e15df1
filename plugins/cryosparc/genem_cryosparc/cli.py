"""``genem-cryosparc``: run GenEM as cryoSPARC external jobs (online) or exchange files with cryoSPARC (offline).

Online (needs a running cryoSPARC and cryosparc-tools of the same major.minor version; credentials come from
the environment, CRYOSPARC_BASE_URL / CRYOSPARC_EMAIL / CRYOSPARC_PASSWORD, or from ``python -m cryosparc.tools
login``, never from this command line)::

    genem-cryosparc simulate  --project P3 --workspace W1 [--n-micrographs 10 ... any `genem simulate` option]
    genem-cryosparc denoise   --project P3 --workspace W1 --particles J12.particles --model M.pt
    genem-cryosparc translate --project P3 --workspace W1 --model G.pt --dataset SIM_DIR
    genem-cryosparc pick      --project P3 --workspace W1 --micrographs J5.exposures --model PICKER_DIR
                              (or --diameter-A 300 for the training-free DoG picker)

Offline::

    genem-cryosparc export SIM_OR_DENOISE_DIR --out DIR [--passthrough X.cs]
    genem-cryosparc import X.cs --out DIR [--project-dir CRYOSPARC_PROJECT_DIR]
"""
from __future__ import annotations

import argparse
import sys

from genem.io.errors import GenemInputError


def _add_online_common(p):
    p.add_argument("--project", required=True, help="cryoSPARC project uid, e.g. P3")
    p.add_argument("--workspace", required=True, help="cryoSPARC workspace uid, e.g. W1")
    p.add_argument("--title", help="title of the external job")
    p.add_argument("--work-dir", help="local scratch folder (default: a new temporary folder)")
    p.add_argument("--project-dir", help="the cryoSPARC project directory as mounted here (default: the one the "
                                         "server reports, if visible; otherwise files are downloaded)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genem-cryosparc", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="write .cs + .csg (Import Result Group) from a GenEM output folder")
    p.add_argument("src", help="folder with particles.star (simulation, denoise or translate output) or the STAR")
    p.add_argument("--out", required=True, help="export folder (new, outside the input)")
    p.add_argument("--name", default="genem", help="file name stem of the .cs/.csg files")
    p.add_argument("--passthrough", help="the .cs the particles came from (via `import`): keep its other slots")
    p.add_argument("--link", choices=("hardlink", "copy", "symlink"), default="hardlink",
                   help="how image files are placed in the export folder (hardlink falls back to copy)")
    p.add_argument("--no-micrographs", action="store_true", help="export particles only")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("import", help="turn a cryoSPARC particle .cs into particles.star for the engine")
    p.add_argument("cs", help="cryoSPARC particle .cs (job output or exported group)")
    p.add_argument("--out", required=True, help="new folder for particles.star")
    p.add_argument("--project-dir", help="cryoSPARC project directory (blob paths are relative to it)")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("simulate", help="simulate a dataset into a new external job (particles + micrographs)")
    _add_online_common(p)
    p.add_argument("simulate_args", nargs=argparse.REMAINDER,
                   help="options passed to `genem simulate` (after --), e.g. -- --n-micrographs 4 --box 64")
    p.set_defaults(func=_cmd_online, online="simulate")

    p = sub.add_parser("denoise", help="denoise connected particles; outputs particles with a new blob")
    _add_online_common(p)
    p.add_argument("--particles", required=True, help="input as JOB.OUTPUT, e.g. J12.particles")
    p.add_argument("--model", required=True, help="GenEM denoiser model")
    p.add_argument("--engine-args", nargs=argparse.REMAINDER, default=[],
                   help="further options for `genem denoise apply` (last on the line)")
    p.set_defaults(func=_cmd_online, online="denoise")

    p = sub.add_parser("translate", help="translate a simulated dataset's noise; outputs particles + micrographs")
    _add_online_common(p)
    p.add_argument("--model", required=True, help="model folder written by `genem translate train`")
    p.add_argument("--dataset", required=True, help="local GenEM simulated dataset folder to translate")
    p.add_argument("--engine-args", nargs=argparse.REMAINDER, default=[],
                   help="further options for `genem translate apply` (last on the line)")
    p.set_defaults(func=_cmd_online, online="translate")

    p = sub.add_parser("pick", help="pick connected micrographs; outputs particles with location and pick_stats")
    _add_online_common(p)
    p.add_argument("--micrographs", required=True, help="input as JOB.OUTPUT, e.g. J5.exposures")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="picker folder written by `genem pick train`")
    g.add_argument("--diameter-A", type=float, help="particle diameter (A): the training-free DoG picker")
    p.add_argument("--engine-args", nargs=argparse.REMAINDER, default=[],
                   help="further options for `genem pick apply`, e.g. --threshold 0.4 (last on the line)")
    p.set_defaults(func=_cmd_online, online="pick")
    return parser


def _cmd_export(args) -> int:
    from .offline import export_dataset

    res = export_dataset(args.src, args.out, name=args.name, passthrough_cs=args.passthrough, link=args.link,
                         include_micrographs=not args.no_micrographs)
    for kind, path in res.items():
        print(f"genem-cryosparc: wrote {path} (Import Result Group: {kind})")
    return 0


def _cmd_import(args) -> int:
    from .offline import import_particles

    star = import_particles(args.cs, args.out, project_dir=args.project_dir)
    print(f"genem-cryosparc: wrote {star}")
    return 0


def _cmd_online(args) -> int:
    from . import external

    return external.run_from_args(args)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GenemInputError as e:
        print(f"genem-cryosparc: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        from .external import EngineError

        if not isinstance(e, EngineError):
            raise
        lines = str(e).splitlines()
        print(f"genem-cryosparc: error: {lines[0]}: {lines[-1] if len(lines) > 1 else ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("genem-cryosparc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
