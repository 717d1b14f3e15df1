"""``genem evaluate realism``: how real do synthetic micrographs look? (offline; no downloaded weights)

    genem evaluate realism --real MODEL_DIR/heldout/*.mrc --synthetic SIM_DIR --synthetic translated=OUT_DIR \
        --out realism.json

Real micrographs are clipped, Fourier-cropped to the synthetic pixel size and normalised; synthetic ones are clipped
and normalised; both are cut into non-overlapping tiles. Reports per synthetic set the radially averaged
power-spectrum distance, the intensity-histogram distance, the classifier two-sample-test accuracy of the default
classifier and of a stronger one over ``--seeds`` seeds (mean, sd, max), per-band spectra, and the artefacts that
``genem.metrics.artefacts`` finds on the whole micrographs; plus a PNG of the spectra and the band differences.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from genem.io.errors import GenemInputError

from .defaults import given, keyword_help
from .progress import add_progress_flag, progress_from_args


def add_parser(evsub):
    from genem.metrics.realism import evaluate_realism

    p = evsub.add_parser("realism", help="compare synthetic micrographs with real ones (RAPS, histogram, C2ST)")
    p.add_argument("--real", required=True, nargs="+", help="real micrographs: files, folders or quoted globs")
    p.add_argument("--synthetic", required=True, action="append",
                   help="[NAME=]dataset folder, micrograph folder or glob; repeat to compare several sets")
    p.add_argument("--out", required=True, help="JSON report (a PNG of the spectra is written beside it)")
    p.add_argument("--plot", help="PNG of the power spectra (default: OUT with .png)")
    p.add_argument("--tile-px", type=int, default=64, help="tile size (default: %(default)s px)")
    p.add_argument("--pixel-size-A", type=float, help="synthetic pixel size when it is not in a dataset/header")
    p.add_argument("--real-pixel-size-A", type=float, help="real pixel size (overrides headers)")
    p.add_argument("--max-micrographs", type=int, default=50, help="per synthetic set (default: %(default)s)")
    p.add_argument("--c2st-epochs", type=int, help=keyword_help(evaluate_realism, "c2st_epochs"))
    p.add_argument("--seed", type=int, help=keyword_help(evaluate_realism, "seed", "first classifier seed"))
    p.add_argument("--seeds", type=int, default=3, help="classifier seeds (spread over seeds; default: %(default)s)")
    p.add_argument("--no-strong", action="store_true", help="skip the stronger classifier")
    p.add_argument("--no-artefacts", action="store_true", help="skip the artefact search on whole micrographs")
    add_progress_flag(p)
    p.set_defaults(func=run)


def _synthetic_files(spec: str) -> tuple[str, list[Path], float | None]:
    from genem.io import GenemDataset
    from genem.io.dataset import MICROGRAPHS_STAR
    from genem.translate.data import expand_real_paths

    name, _, path = spec.rpartition("=")
    path = path or spec
    p = Path(path)
    px = None
    if (p / MICROGRAPHS_STAR).exists():
        ds = GenemDataset.open(p)
        files = [ds.micrograph_path(n) for n in ds.micrographs()["rlnMicrographName"]]
        px = ds.pixel_size_A
    else:
        try:
            files = expand_real_paths([path])
        except GenemInputError:
            raise GenemInputError(path, "no synthetic micrographs found") from None
    return name or p.name or path, files, px


def run(args):
    from genem.metrics.artefacts import detect_artefacts
    from genem.metrics.realism import evaluate_realism, plot_raps
    from genem.translate.data import (expand_real_paths, grid_tiles, prepare_real_micrograph,
                                      prepare_simulated_micrograph, read_micrograph_any)
    from genem.io import write_json_atomic
    from genem.io.outputs import check_out_file
    from genem.progress import report

    out = check_out_file(args.out)
    plot = check_out_file(args.plot or out.with_suffix(".png"), flag="--plot")
    progress = progress_from_args(args)
    real_files = expand_real_paths(args.real)  # every input found before any is read
    t = args.tile_px
    synth, pixel = {}, None
    sources, whole = {}, {}
    for spec in args.synthetic:
        name, files, px = _synthetic_files(spec)
        tiles, images = [], []
        files = files[: args.max_micrographs]
        for k, f in enumerate(files):
            report(progress, f"read {name}", k, len(files), "mic")
            img, hpx, _ = read_micrograph_any(f)
            px_here = args.pixel_size_A or px or hpx
            if px_here is None:
                raise GenemInputError(f, "pixel size unknown; pass --pixel-size-A")
            if pixel is None:
                pixel = px_here
            elif abs(px_here - pixel) > 0.01 * pixel:
                raise GenemInputError(f, f"pixel size {px_here:.4g} A differs from the other synthetic sets' {pixel:.4g} A")
            images.append(prepare_simulated_micrograph(img))
            tiles.append(grid_tiles(images[-1], t))
            if args.no_artefacts:
                images.clear()
        report(progress, f"read {name}", len(files), len(files), "mic")
        tiles = np.concatenate(tiles)
        if len(tiles) < 4:
            raise GenemInputError(spec, f"fewer than 4 tiles of {t} px")
        if name in synth:
            name = f"{name}_{len(synth)}"
        synth[name], whole[name] = tiles, images
        sources[name] = [str(f) for f in files]
    real_tiles, real_whole = [], []
    for k, f in enumerate(real_files):
        report(progress, "read real", k, len(real_files), "mic")
        rm = prepare_real_micrograph(f, pixel, pixel_size_A=args.real_pixel_size_A)
        real_tiles.append(grid_tiles(rm.image, t))
        real_whole.append(rm.image)
    report(progress, "read real", len(real_files), len(real_files), "mic")
    real_tiles = np.concatenate(real_tiles)
    if len(real_tiles) < 4:
        raise GenemInputError(args.real[0], f"fewer than 4 real tiles of {t} px")
    result = evaluate_realism(real_tiles, synth, progress=progress, n_seeds=args.seeds, strong=not args.no_strong,
                              pixel_size_A=pixel, **given(args, "seed", "c2st_epochs"))
    if not args.no_artefacts:
        for name in synth:
            result["synthetic"][name]["artefacts"] = detect_artefacts(real_whole, whole[name])
    result.update({"pixel_size_A": pixel, "real": [str(f) for f in real_files], "synthetic_sources": sources,
                   "notes": "raps_distance_log10: mean |log10 RAPS difference| (0 best); histogram_distance_w1: "
                            "W1 of intensity histograms at 1x and 4x binning (0 best); c2st_accuracy: held-out "
                            "accuracy of a small CNN real-vs-synthetic (0.5 = indistinguishable), first seed; c2st / "
                            "c2st_strong: that classifier and a stronger one over the seeds; bands: log10 power per "
                            "frequency band; artefacts: genem.metrics.artefacts on whole micrographs"})
    plot_raps(plot, real_tiles, synth, pixel_size_A=pixel)
    result["plot"] = str(plot)
    write_json_atomic(out, result)
    for name, r in result["synthetic"].items():
        strong = (f"  strong {r['c2st_strong']['mean']:.3f} +- {r['c2st_strong']['sd']:.3f}"
                  if "c2st_strong" in r else "")
        arte = f"  artefacts {','.join(r['artefacts']['artefacts']) or 'none'}" if "artefacts" in r else ""
        print(f"{name}: raps {r['raps_distance_log10']:.4f}  hist {r['histogram_distance_w1']:.4f}  "
              f"c2st {r['c2st']['mean']:.3f} +- {r['c2st']['sd']:.3f}{strong}{arte}  "
              f"({r['n_tiles']} tiles vs {result['n_real_tiles']} real, seeds {result['seeds']})")
    return 0
