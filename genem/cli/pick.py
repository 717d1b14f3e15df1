"""``genem pick``: train a particle picker and pick micrographs.

    genem pick train --data DATASET [DATASET ...] --out MODEL_DIR [--real-labels ... --real-micrographs ...]
    genem pick apply --model MODEL_DIR --micrographs STAR|FILES|GLOB --out DIR
    genem pick apply --method dog --diameter-A D --micrographs ... --out DIR     (training-free baseline)
"""
from __future__ import annotations

import sys

from genem.io.errors import GenemInputError

from .defaults import add_config_flags, given_fields
from .progress import add_progress_flag, progress_from_args

# (flag, PickTrainConfig field, type, help); flags default to None so the config's defaults apply
TRAIN_OPTIONS = [
    ("--steps", "steps", int, "training steps"),
    ("--batch-size", "batch_size", int, "patches per step"),
    ("--patch-px", "patch_px", int, "patch size at the picker's pixel size"),
    ("--lr", "lr", float, "Adam learning rate"),
    ("--seed", "seed", int, "random seed"),
    ("--width", "width", int, "network channels at full resolution"),
    ("--pixel-size-A", "pixel_size_A", float, "picker pixel size (default: particle diameter / 16, never finer "
                                              "than the data)"),
    ("--diameter-A", "particle_diameter_A", float, "particle diameter (default: measured on the masks)"),
    ("--real-pixel-size-A", "real_pixel_size_A", float, "pixel size of the real micrographs (PNG has none)"),
    ("--checkpoint-every", "checkpoint_every", int, "steps between checkpoints"),
    ("--log-every", "log_every", int, "steps per line of loss.tsv"),
]


def add_parser(sub):
    p = sub.add_parser("pick", help="train a particle picker and pick micrographs",
                       description="Particle picking: a fully convolutional centre-heatmap picker.")
    psub = p.add_subparsers(dest="pick_command", required=True)

    t = psub.add_parser("train", help="train a picker on GenEM datasets and/or real labelled micrographs")
    t.add_argument("--data", nargs="*", default=[], help="GenEM dataset folders (exact centres)")
    t.add_argument("--out", required=True, help="model folder (picker.json, model.pt, checkpoint.pt, loss.tsv)")
    t.add_argument("--real-labels", nargs="+", default=[],
                   help="coordinate STAR files or label masks (files, folders, quoted globs), named like their "
                        "micrographs")
    t.add_argument("--real-micrographs", nargs="+", default=[], help="the labelled real micrographs")
    t.add_argument("--init", help="start from this picker's weights (fine-tuning)")
    t.add_argument("--resume", action="store_true", help="continue from checkpoint.pt in --out")
    t.add_argument("--device", default="cpu", help="cpu or cuda")
    from genem.pick import PickTrainConfig

    add_config_flags(t, PickTrainConfig, TRAIN_OPTIONS)
    add_progress_flag(t)
    t.set_defaults(func=run_train)

    a = psub.add_parser("apply", help="pick micrographs with a trained picker (or the DoG baseline)")
    a.add_argument("--model", help="picker folder written by 'genem pick train'")
    a.add_argument("--method", choices=("model", "dog"), default="model",
                   help="model (default) or dog: training-free difference-of-Gaussians blob picker")
    a.add_argument("--diameter-A", type=float, help="particle diameter, for --method dog")
    a.add_argument("--micrographs", nargs="+", required=True,
                   help="a micrographs STAR, or micrograph files / folders / quoted globs (.mrc, .png, .tif)")
    a.add_argument("--out", required=True, help="output folder (picks/, coordinates.star, particles.cs, ...)")
    a.add_argument("--pixel-size-A", type=float, help="micrograph pixel size (overrides STAR and header)")
    a.add_argument("--threshold", type=float,
                   help="keep picks scoring at least this (default: the picker's, chosen on its training data; "
                        "0 keeps every candidate, for 'genem evaluate picking')")
    a.add_argument("--device", default="cpu")
    add_progress_flag(a)
    a.set_defaults(func=run_apply)


def run_train(args) -> int:
    from genem.distributed import is_writer_process
    from genem.pick import PickTrainConfig, train_picker

    cfg = PickTrainConfig(**given_fields(args, TRAIN_OPTIONS))
    out = train_picker(args.data, args.out, cfg, real_labels=args.real_labels,
                       real_micrographs=args.real_micrographs, init=args.init, resume=args.resume,
                       device=args.device, progress=progress_from_args(args))
    if is_writer_process():  # under torchrun: once, by rank 0
        print(f"genem pick train: wrote {out}")
    return 0


def run_apply(args) -> int:
    from genem.pick import DogPicker, Picker, pick_micrographs

    if args.method == "dog":
        if args.model:
            raise GenemInputError("--model", "not used with --method dog")
        picker = DogPicker(args.diameter_A)
    else:
        if not args.model:
            raise GenemInputError("--model", "required (or --method dog)")
        if args.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise GenemInputError("--device", "CUDA requested but not available")
        picker = Picker.load(args.model, device=args.device)
    out = pick_micrographs(picker, args.micrographs, args.out, pixel_size_A=args.pixel_size_A,
                           threshold=args.threshold, progress=progress_from_args(args))
    print(f"genem pick apply: wrote {out}", file=sys.stderr)
    return 0
