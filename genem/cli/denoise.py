"""``genem denoise train|apply``: the diffusion denoiser (genem.restore)."""
from __future__ import annotations

import sys
from pathlib import Path

from .defaults import config_help, given, keyword_help
from .progress import add_progress_flag, progress_from_args


def add_parser(subparsers) -> None:
    from genem.restore import TrainConfig, denoise_micrographs, denoise_particles, simulate_specimen_pairs

    def train_help(field, text=""):
        return config_help(TrainConfig, field, text)

    p = subparsers.add_parser("denoise", help="train or apply the diffusion particle denoiser")
    sub = p.add_subparsers(dest="denoise_command", required=True)

    t = sub.add_parser("train", help="train on (noisy, clean) particle pairs of GenEM dataset folders")
    t.add_argument("--data", nargs="+", default=[], help="GenEM dataset folders (simulate / translate output)")
    t.add_argument("--out", required=True, help="model folder to write (model.pt, model.json, train.json)")
    t.add_argument("--steps", type=int, help=train_help("steps", "diffusion U-Net optimiser steps (0 with --init: keep its "
                                                               "diffusion network, retrain the post-processor for "
                                                               "--sample-steps)"))
    t.add_argument("--post-steps", type=int, help=train_help("post_steps", "post-processing U-Net steps (0: none)"))
    t.add_argument("--batch-size", type=int, help=train_help("batch_size"))
    t.add_argument("--crop", type=int, help=train_help("crop_px", "training crop size"))
    t.add_argument("--lr", type=float, help=train_help("lr"))
    t.add_argument("--schedule", choices=("cosine", "linear"), help=train_help("schedule"))
    t.add_argument("--timesteps", type=int, help=train_help("num_train_timesteps", "training diffusion steps T"))
    t.add_argument("--prediction", choices=("sample", "epsilon"),
                   help=train_help("prediction_type", "network predicts the clean image (sample) or the noise "
                                                      "(epsilon)"))
    t.add_argument("--channels", type=int, help=train_help("base_channels", "U-Net base channels"))
    t.add_argument("--post-channels", type=int,
                   help=train_help("post_base_channels", "post-processing U-Net base channels"))
    t.add_argument("--channel-mults", help=train_help("channel_mults", "channel multiplier per U-Net level, e.g. "
                                                                       "1,2,2,4"))
    t.add_argument("--post-train-images", type=int,
                   help=train_help("post_train_images", "training particles whose diffusion outputs train the "
                                                        "post-processing U-Net"))
    t.add_argument("--lr-decay", choices=("cosine", "constant"), help=train_help("lr_decay"))
    t.add_argument("--sample-steps", type=int, help=train_help("sample_steps", "default DDIM steps of the trained "
                                                                               "model"))
    t.add_argument("--max-particles", type=int, help=train_help("max_particles"))
    t.add_argument("--checkpoint-every", type=int, help=train_help("checkpoint_every"))
    t.add_argument("--flip-contrast", action="store_true",
                   help="augment with both contrast polarities (data of unknown polarity)")
    t.add_argument("--seed", type=int, help=train_help("seed"))
    t.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    t.add_argument("--device", default="cpu")
    t.add_argument("--init", default=None, metavar="MODEL_DIR",
                   help="start from this trained model ('default': the one shipped with GenEM) and fine-tune it; its "
                        "architecture and schedule are kept (--channels, --channel-mults, --post-channels, --schedule, "
                        "--timesteps, --prediction are ignored); the data must be at its pixel size")
    t.add_argument("--structure", default=None, metavar="MAP_OR_MODEL",
                   help="with --init and --like: simulate training pairs of this specimen (density map or atomic "
                        "model; a low-resolution map is enough) under the imaging conditions of the --like "
                        "particles, then fine-tune on them (and on --data, if given)")
    t.add_argument("--like", default=None, metavar="PARTICLES",
                   help="particles (.star or .cs, with CTF parameters) whose voltage, Cs, amplitude contrast, "
                        "defocus and astigmatism ranges the --structure simulation copies")
    t.add_argument("--map-pixel-size-A", type=float, default=None, help="pixel size of a --structure map whose "
                                                                         "header has none")
    t.add_argument("--simulate-particles", type=int,
                   help=keyword_help(simulate_specimen_pairs, "n_particles", "particles of --structure to simulate "
                                                                             "(written to OUT/specimen_data)"))
    t.add_argument("--keep-specimen-data", action="store_true",
                   help="keep OUT/specimen_data after training (default: deleted once the model is written; "
                        "OUT/specimen_simulation.json holds its exact, seeded configuration)")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    add_progress_flag(t)
    t.set_defaults(func=run_train)

    a = sub.add_parser("apply", help="denoise particles (STAR, .cs, .mrcs) or micrographs")
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument("--particles", help="particles: RELION .star, cryoSPARC .cs or an .mrcs stack")
    src.add_argument("--micrographs", help="micrographs: a STAR with rlnMicrographName or one .mrc")
    a.add_argument("--out", required=True, help="output folder (new; never an input folder)")
    a.add_argument("--model", default=None, help="model folder (default: the model shipped with GenEM)")
    a.add_argument("--steps", type=int, default=None,
                   help="DDIM steps, each one network pass, then the post-processing U-Net (default: the model's "
                        "default route, for the shipped model 1 step; 10 is the full sampler)")
    a.add_argument("--samples", type=int,
                   help=keyword_help(denoise_particles, "n_samples", "average this many diffusion samples"))
    a.add_argument("--no-postprocess", action="store_true", help="skip the post-processing U-Net")
    a.add_argument("--batch-size", type=int, help=keyword_help(denoise_particles, "batch_size"))
    a.add_argument("--root", default=None, help="folder the image paths are relative to (default: found)")
    a.add_argument("--pixel-size-A", type=float, default=None, help="override the pixel size")
    a.add_argument("--invert-contrast", action="store_true",
                   help="the particles have protein black (the model expects RELION's --invert_contrast polarity)")
    a.add_argument("--tile", type=int,
                   help=keyword_help(denoise_micrographs, "tile", "micrograph tile size at the model's pixel size",
                                     unit="px"))
    a.add_argument("--seed", type=int, help=keyword_help(denoise_particles, "seed"))
    a.add_argument("--resume", action="store_true",
                   help="continue an interrupted particle run in --out (same settings; finished stacks are kept)")
    a.add_argument("--threads", type=int, default=None)
    a.add_argument("--device", default="cpu")
    add_progress_flag(a)
    a.set_defaults(func=run_apply)


def _threads(n):
    if n:
        import torch

        torch.set_num_threads(int(n))


def _ints(text: str, flag: str) -> tuple:
    from genem.io import GenemInputError

    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise GenemInputError("arguments", f"{flag} takes comma-separated integers, got {text!r}") from None


def run_train(args) -> int:
    from genem.io import GenemInputError
    from genem.restore import Denoiser, TrainConfig, train_denoiser

    _threads(args.threads)
    kw = given(args, "steps", "post_steps", "batch_size", "lr", "lr_decay", "schedule", "post_train_images",
               "sample_steps", "max_particles", "checkpoint_every", "seed", crop_px="crop",
               num_train_timesteps="timesteps", prediction_type="prediction", base_channels="channels",
               post_base_channels="post_channels")
    if args.channel_mults is not None:
        kw["channel_mults"] = _ints(args.channel_mults, "--channel-mults")
    if args.flip_contrast:
        kw["flip_contrast"] = True
    try:
        cfg = TrainConfig(**kw)
    except ValueError as e:
        raise GenemInputError("arguments", str(e)) from None
    progress = progress_from_args(args)
    init = None
    if args.init:
        init = Denoiser.load(None if args.init == "default" else args.init)
    data = list(args.data)
    if args.structure or args.like:
        if not (args.structure and args.like and init is not None):
            raise GenemInputError("arguments", "--structure and --like go together, with --init (the model to "
                                               "fine-tune: its pixel size and box set the simulation's)")
        from genem.distributed import join
        from genem.restore import simulate_specimen_pairs
        from genem.restore.train import check_model_folder

        ranks = join(args.device)  # under torchrun rank 0 alone simulates, the others take its folder
        specimen = None
        if ranks.writer:
            check_model_folder(args.out, args.resume)  # before the simulation, not after it
            specimen = simulate_specimen_pairs(args.structure, args.like, args.out, init,
                                               map_pixel_size_A=args.map_pixel_size_A, seed=cfg.seed,
                                               progress=progress, command_line=["genem"] + sys.argv[1:],
                                               **given(args, n_particles="simulate_particles"))
        data.append(ranks.from_writer(specimen))
    elif not data:
        raise GenemInputError("arguments", "give --data (GenEM dataset folders) or --structure with --like")
    path = train_denoiser(data, args.out, cfg, device=args.device, resume=args.resume, progress=progress, init=init)
    from genem.distributed import is_writer_process

    if not is_writer_process():  # under torchrun: rank 0 reports and cleans up
        return 0
    if args.structure and not args.keep_specimen_data:
        import shutil

        shutil.rmtree(data[-1])
    print(f"genem denoise: wrote {path}", file=sys.stderr)
    return 0


def run_apply(args) -> int:
    from genem.io.outputs import check_out_dir
    from genem.restore import Denoiser, denoise_micrographs, denoise_particles
    from genem.restore.apply import OUT_STACK_DIR, UNFINISHED_RECORD

    # here, not in the engine: a RELION job writes into the job folder RELION made for it
    check_out_dir(args.out, "genem denoise apply", markers=(UNFINISHED_RECORD, "denoise_run.json", OUT_STACK_DIR))
    _threads(args.threads)
    model = Denoiser.load(args.model, device=args.device)
    kw = dict(steps=args.steps, postprocess=False if args.no_postprocess else None,
              invert_contrast=args.invert_contrast,
              root=args.root, pixel_size_A=args.pixel_size_A, progress=progress_from_args(args),
              **given(args, "seed", n_samples="samples"))
    if args.particles:
        out = denoise_particles(args.particles, args.out, model, resume=args.resume, **given(args, "batch_size"),
                                **kw)
    else:
        out = denoise_micrographs(args.micrographs, args.out, model, **given(args, "tile"), **kw)
    print(f"genem denoise: wrote {Path(out)}", file=sys.stderr)
    return 0
