"""``genem evaluate denoise``: PSNR / SSIM / FRC of the denoiser and baselines against ground truth."""
from __future__ import annotations

import json
import sys

from .progress import add_progress_flag, progress_from_args


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("denoise", help="denoiser quality against ground truth (GenEM dataset folders)")
    p.add_argument("--data", nargs="+", required=True, help="held-out GenEM dataset folders (with clean twins)")
    p.add_argument("--out", required=True, help="folder for metrics.json and montage.png")
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--max-particles", type=int, default=256)
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model's)")
    p.add_argument("--mean-of", type=int, default=0, help="also score the mean of this many samples")
    p.add_argument("--dihedral", action="store_true",
                   help="the samples of --mean-of see the image turned by the square's 8 symmetries")
    p.add_argument("--compare-steps", type=int, default=0, help="also score DDIM with this many steps")
    p.add_argument("--no-topaz", action="store_true", help="skip the Topaz-Denoise baseline")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    add_progress_flag(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from genem.restore.evaluate import evaluate_denoiser
    from genem.restore.model import Denoiser

    if args.threads:
        torch.set_num_threads(args.threads)
    model = Denoiser.load(args.model, device=args.device)
    res = evaluate_denoiser(model, args.data, args.out, max_particles=args.max_particles, steps=args.steps,
                            n_samples_mean=args.mean_of, dihedral=args.dihedral, compare_steps=args.compare_steps, topaz=not args.no_topaz,
                            seed=args.seed, progress=progress_from_args(args))
    table = {k: v["psnr_dB"] for k, v in res["methods"].items()}
    print(json.dumps({"psnr_dB": table, **res["summary"]}, indent=1))
    print(f"genem evaluate denoise: wrote {args.out}/metrics.json", file=sys.stderr)
    return 0
