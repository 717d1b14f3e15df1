"""``genem evaluate denoise``: PSNR / SSIM / FRC of the denoiser and baselines against ground truth."""
from __future__ import annotations

import json
import sys

from .defaults import given, keyword_help
from .progress import add_progress_flag, progress_from_args


def add_parser(subparsers) -> None:
    from genem.restore import evaluate_denoiser

    def evaluate_help(keyword, text=""):
        return keyword_help(evaluate_denoiser, keyword, text)

    p = subparsers.add_parser("denoise", help="denoiser quality against ground truth (GenEM dataset folders)")
    p.add_argument("--data", nargs="+", required=True, help="held-out GenEM dataset folders (with clean twins)")
    p.add_argument("--out", required=True, help="folder for metrics.json and montage.png")
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--max-particles", type=int, help=evaluate_help("max_particles"))
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model's)")
    p.add_argument("--mean-of", type=int,
                   help=evaluate_help("n_samples_mean", "also score the mean of this many samples (0: not)"))
    p.add_argument("--dihedral", action="store_true",
                   help="the samples of --mean-of see the image turned by the square's 8 symmetries")
    p.add_argument("--compare-steps", type=int,
                   help=evaluate_help("compare_steps", "also score DDIM with this many steps (0: not)"))
    p.add_argument("--no-topaz", action="store_true", help="skip the Topaz-Denoise baseline")
    p.add_argument("--seed", type=int, help=evaluate_help("seed"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    add_progress_flag(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from genem.restore import Denoiser, evaluate_denoiser

    if args.threads:
        torch.set_num_threads(args.threads)
    model = Denoiser.load(args.model, device=args.device)
    res = evaluate_denoiser(model, args.data, args.out, steps=args.steps, dihedral=args.dihedral,
                            topaz=not args.no_topaz, progress=progress_from_args(args), **given(args, "max_particles", "compare_steps", "seed",
                                                             n_samples_mean="mean_of"))
    table = {k: v["psnr_dB"] for k, v in res["methods"].items()}
    print(json.dumps({"psnr_dB": table, **res["summary"]}, indent=1))
    print(f"genem evaluate denoise: wrote {args.out}/metrics.json", file=sys.stderr)
    return 0
