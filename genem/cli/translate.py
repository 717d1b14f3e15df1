"""``genem translate``: learn real micrograph noise (CUT + GenEM's mask-guided PatchNCE) and apply it to a simulation.

    genem translate train --simulated SIM_DIR --real 'REAL/*.mrc' --out MODEL_DIR
    genem translate apply --model MODEL_DIR --simulated SIM_DIR --out OUT_DIR
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from genem.io.errors import GenemInputError

from .defaults import config_help, given, keyword_help
from .progress import add_progress_flag, progress_from_args


def _device(text: str) -> str:
    import torch

    if text.startswith("cuda") and not torch.cuda.is_available():
        raise GenemInputError("--device", f"{text} requested but CUDA is not available")
    return text


def add_parser(sub):
    from genem.translate import GeneratorConfig, TranslateTrainConfig, apply_translator

    def train_help(field, text=""):
        return config_help(TranslateTrainConfig, field, text)

    p = sub.add_parser("translate", help="learn real micrograph noise and apply it to simulated data",
                       description="Unpaired simulated-to-real translation (CUT with mask-guided PatchNCE).")
    tsub = p.add_subparsers(dest="translate_command", required=True)

    t = tsub.add_parser("train", help="train a translator on a simulated folder and real micrographs")
    t.add_argument("--simulated", required=True, help="GenEM simulated dataset folder (with Masks/)")
    t.add_argument("--real", required=True, nargs="+", help="real micrographs: files, folders or quoted globs")
    t.add_argument("--out", required=True, help="model folder (checkpoints, logs, samples, model.pt)")
    t.add_argument("--real-pixel-size-A", type=float, help="pixel size of the real micrographs (overrides headers)")
    t.add_argument("--steps", type=int, help=train_help("steps", "training steps (with --resume: the saved number)"))
    t.add_argument("--tile-px", type=int,
                   help=train_help("tile_px", "training tile size (at the simulation pixel size)"))
    t.add_argument("--batch-size", type=int, help=train_help("batch_size"))
    t.add_argument("--lr", type=float, help=train_help("lr"))
    t.add_argument("--lambda-gan", type=float, help=train_help("lambda_gan"))
    t.add_argument("--lambda-nce", type=float, help=train_help("lambda_nce"))
    t.add_argument("--nce-temperature", type=float, help=train_help("nce_temperature"))
    t.add_argument("--nce-patches", type=int, help=train_help("nce_patches", "patches sampled per image and layer"))
    t.add_argument("--no-mask-guided", action="store_true", help="CUT's random negatives instead of GenEM's masks")
    t.add_argument("--no-nce-identity", action="store_true", help="drop the identity PatchNCE term on real tiles")
    t.add_argument("--ema-decay", type=float,
                   help=train_help("ema_decay", "moving average of the generator weights kept as the model (0 = off)"))
    t.add_argument("--base-channels", type=int, help=config_help(GeneratorConfig, "base_channels", "generator width"))
    t.add_argument("--n-blocks", type=int, help=config_help(GeneratorConfig, "n_blocks", "generator residual blocks"))
    t.add_argument("--holdout-fraction", type=float,
                   help=train_help("holdout_fraction", "right-hand strip of each real micrograph kept out of training "
                                                       "(saved under heldout/)"))
    t.add_argument("--val-fraction", type=float,
                   help=train_help("val_fraction", "validation: whole micrographs when there are several, else a strip "
                                                   "beside the held-out one (0 = no validation, no early stop)"))
    t.add_argument("--val-every", type=int, help=train_help("val_every", "steps between validations"))
    t.add_argument("--patience", type=int,
                   help=train_help("patience", "stop after this many validations without a better score"))
    t.add_argument("--time-limit-min", type=float,
                   help=train_help("time_limit_min", "stop after this many minutes (the best-validated model is kept)"))
    t.add_argument("--max-micrographs", type=int, help="use only the first N simulated micrographs")
    t.add_argument("--checkpoint-every", type=int, help=train_help("checkpoint_every"))
    t.add_argument("--grid-every", type=int,
                   help=train_help("grid_every", "write a PNG of real/simulated/translated tiles"))
    t.add_argument("--log-every", type=int, help=train_help("log_every"))
    t.add_argument("--seed", type=int, help=train_help("seed"))
    t.add_argument("--device", type=_device, default="cpu")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    add_progress_flag(t)
    t.set_defaults(func=run_train)

    a = tsub.add_parser("apply", help="translate a simulated folder with a trained model")
    a.add_argument("--model", required=True, help="model folder written by 'genem translate train'")
    a.add_argument("--simulated", required=True, help="GenEM simulated dataset folder")
    a.add_argument("--out", required=True, help="new dataset folder (same layout, translated micrographs)")
    a.add_argument("--device", type=_device, default="cpu")
    def apply_help(keyword, text):
        return keyword_help(apply_translator, keyword, text)

    a.add_argument("--tile-px", type=int, help=apply_help("tile_px", "inference tile (multiple of 4)"))
    a.add_argument("--context-px", type=int, help=apply_help("context_px", "discarded border per tile (>= receptive "
                                                                           "radius)"))
    a.add_argument("--blend-px", type=int, help=apply_help("blend_px", "cross-fade width between tiles"))
    add_progress_flag(a)
    a.set_defaults(func=run_apply)


# flags whose dest is a TranslateTrainConfig field
TRAIN_FIELDS = ("steps", "tile_px", "batch_size", "lr", "lambda_gan", "lambda_nce", "nce_temperature", "nce_patches",
                "holdout_fraction", "real_pixel_size_A", "max_micrographs", "checkpoint_every", "grid_every",
                "log_every", "seed", "ema_decay", "val_fraction", "val_every", "patience", "time_limit_min")


def run_train(args):
    from genem.translate import GeneratorConfig, TranslateTrainConfig, train_translator

    kw = given(args, *TRAIN_FIELDS)
    if args.steps is None and args.resume and (Path(args.out) / "config.json").exists():
        kw["steps"] = json.loads((Path(args.out) / "config.json").read_text())["config"]["steps"]
    if args.no_mask_guided:
        kw["mask_guided"] = False
    if args.no_nce_identity:
        kw["nce_identity"] = False
    try:
        cfg = TranslateTrainConfig(**kw, generator=GeneratorConfig(**given(args, "base_channels", "n_blocks")))
    except ValueError as e:
        raise GenemInputError("translate train", str(e)) from None
    out = train_translator(cfg, args.simulated, args.real, args.out, device=args.device, resume=args.resume,
                           progress=progress_from_args(args), command=sys.argv)
    from genem.distributed import is_writer_process

    if is_writer_process():  # under torchrun: once, by rank 0
        print(f"genem translate train: wrote {out / 'model.pt'}")
    return 0


def run_apply(args):
    from genem.translate import apply_translator

    try:
        out = apply_translator(args.model, args.simulated, args.out, device=args.device, progress=progress_from_args(args),
                               command=sys.argv, **given(args, "tile_px", "context_px", "blend_px"))
    except GenemInputError:
        raise
    except ValueError as e:
        raise GenemInputError("translate apply", str(e)) from None
    print(f"genem translate apply: wrote {out}")
    return 0
