"""``genem translate``: learn real micrograph noise (CUT + GenEM's mask-guided PatchNCE) and apply it to a simulation.

    genem translate train --simulated SIM_DIR --real 'REAL/*.mrc' --out MODEL_DIR
    genem translate apply --model MODEL_DIR --simulated SIM_DIR --out OUT_DIR
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from genem.io.errors import GenemInputError

from .progress import add_progress_flag, progress_from_args


def _device(text: str) -> str:
    import torch

    if text.startswith("cuda") and not torch.cuda.is_available():
        raise GenemInputError("--device", f"{text} requested but CUDA is not available")
    return text


def add_parser(sub):
    p = sub.add_parser("translate", help="learn real micrograph noise and apply it to simulated data",
                       description="Unpaired simulated-to-real translation (CUT with mask-guided PatchNCE).")
    tsub = p.add_subparsers(dest="translate_command", required=True)

    t = tsub.add_parser("train", help="train a translator on a simulated folder and real micrographs")
    t.add_argument("--simulated", required=True, help="GenEM simulated dataset folder (with Masks/)")
    t.add_argument("--real", required=True, nargs="+", help="real micrographs: files, folders or quoted globs")
    t.add_argument("--out", required=True, help="model folder (checkpoints, logs, samples, model.pt)")
    t.add_argument("--real-pixel-size-A", type=float, help="pixel size of the real micrographs (overrides headers)")
    t.add_argument("--steps", type=int, help="training steps (default 4000; with --resume: the saved number)")
    t.add_argument("--tile-px", type=int, default=128, help="training tile size (pixels at the simulation pixel size)")
    t.add_argument("--batch-size", type=int, default=4)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--lambda-gan", type=float, default=1.0)
    t.add_argument("--lambda-nce", type=float, default=1.0)
    t.add_argument("--nce-temperature", type=float, default=0.07)
    t.add_argument("--nce-patches", type=int, default=256, help="patches sampled per image and layer")
    t.add_argument("--no-mask-guided", action="store_true", help="CUT's random negatives instead of GenEM's masks")
    t.add_argument("--no-nce-identity", action="store_true", help="drop the identity PatchNCE term on real tiles")
    t.add_argument("--ema-decay", type=float, default=0.999,
                   help="moving average of the generator weights kept as the model (0 = off)")
    t.add_argument("--base-channels", type=int, default=16, help="generator width")
    t.add_argument("--n-blocks", type=int, default=4, help="generator residual blocks")
    t.add_argument("--holdout-fraction", type=float, default=0.25,
                   help="right-hand strip of each real micrograph kept out of training (saved under heldout/)")
    t.add_argument("--max-micrographs", type=int, help="use only the first N simulated micrographs")
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument("--grid-every", type=int, default=500, help="write a PNG of real/simulated/translated tiles")
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", type=_device, default="cpu")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    add_progress_flag(t)
    t.set_defaults(func=run_train)

    a = tsub.add_parser("apply", help="translate a simulated folder with a trained model")
    a.add_argument("--model", required=True, help="model folder written by 'genem translate train'")
    a.add_argument("--simulated", required=True, help="GenEM simulated dataset folder")
    a.add_argument("--out", required=True, help="new dataset folder (same layout, translated micrographs)")
    a.add_argument("--device", type=_device, default="cpu")
    a.add_argument("--tile-px", type=int, default=1024, help="inference tile (multiple of 4)")
    a.add_argument("--context-px", type=int, default=48, help="discarded border per tile (>= receptive radius)")
    a.add_argument("--blend-px", type=int, default=32, help="cross-fade width between tiles")
    add_progress_flag(a)
    a.set_defaults(func=run_apply)


def run_train(args):
    from genem.translate.networks import GeneratorConfig
    from genem.translate.train import TranslateTrainConfig, train_translator

    steps = args.steps
    if steps is None:
        steps = 4000
        if args.resume and (Path(args.out) / "config.json").exists():
            steps = json.loads((Path(args.out) / "config.json").read_text())["config"]["steps"]
    try:
        cfg = TranslateTrainConfig(
            steps=steps, tile_px=args.tile_px, batch_size=args.batch_size, lr=args.lr,
            lambda_gan=args.lambda_gan, lambda_nce=args.lambda_nce, nce_temperature=args.nce_temperature,
            nce_patches=args.nce_patches, mask_guided=not args.no_mask_guided,
            nce_identity=not args.no_nce_identity, holdout_fraction=args.holdout_fraction,
            real_pixel_size_A=args.real_pixel_size_A, max_micrographs=args.max_micrographs,
            checkpoint_every=args.checkpoint_every, grid_every=args.grid_every, log_every=args.log_every,
            seed=args.seed, ema_decay=args.ema_decay, generator=GeneratorConfig(base_channels=args.base_channels, n_blocks=args.n_blocks))
    except ValueError as e:
        raise GenemInputError("translate train", str(e)) from None
    out = train_translator(cfg, args.simulated, args.real, args.out, device=args.device, resume=args.resume,
                           progress=progress_from_args(args), command=sys.argv)
    print(f"genem translate train: wrote {out / 'model.pt'}")
    return 0


def run_apply(args):
    from genem.translate.apply import apply_translator

    try:
        out = apply_translator(args.model, args.simulated, args.out, device=args.device, tile_px=args.tile_px,
                               context_px=args.context_px, blend_px=args.blend_px, progress=progress_from_args(args),
                               command=sys.argv)
    except ValueError as e:
        if isinstance(e, GenemInputError):
            raise
        raise GenemInputError("translate apply", str(e)) from None
    print(f"genem translate apply: wrote {out}")
    return 0
