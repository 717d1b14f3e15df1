"""Training: (1) the SR3-style conditional diffusion U-Net on (noisy, clean) particle pairs, (2) the
post-processing U-Net on the diffusion outputs of training particles. Checkpoints are atomic and ``resume``
continues a run bit-for-bit in its data order (RNG states are saved with the weights)."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genem.config import Config
from genem.distributed import Ranks, global_settings, join
from genem.io import GenemDataset, GenemInputError, atomic_path, write_json_atomic
from genem.io.atomic import remove_stale_temporaries
from genem.io.dataset import CLEAN_IMAGE_COLUMN, PARTICLES_STAR
from genem.io.outputs import check_out_dir, claim_out_dir
from genem.ops import normalize_background_pair_2d
from genem.progress import ProgressCallback, report

from .model import Denoiser
from .postprocess import PostProcessor, postprocess_config
from .schedule import PREDICTIONS, SCHEDULES, DiffusionSchedule
from .unet import UNet, UNetConfig


@dataclass(frozen=True)
class TrainConfig(Config):
    config_name = "denoise train config"

    steps: int = 3000                 # diffusion U-Net optimiser steps (0, fine-tuning only: keep the start's)
    post_steps: int = 1000            # post-processing U-Net steps (0: no post-processing network)
    batch_size: int = 16
    crop_px: int = 48                 # random training crops (the networks are fully convolutional)
    lr: float = 1e-3
    lr_decay: str = "cosine"          # "cosine": lr falls to 5% of ``lr`` along each stage's steps; "constant"
    ema_decay: float = 0.995
    schedule: str = "cosine"
    num_train_timesteps: int = 1000
    prediction_type: str = "sample"
    base_channels: int = 24
    channel_mults: tuple = (1, 2, 2)
    post_base_channels: int = 16
    post_train_images: int = 1024     # training particles run through the sampler to train the post-processor
    sample_steps: int = 10            # default DDIM steps (used for the post-processor's inputs)
    val_fraction: float = 0.05
    max_particles: int = 20000
    checkpoint_every: int = 200
    flip_contrast: bool = False       # augment with both contrast polarities (only for data of unknown polarity)
    seed: int = 0
    init_digest: str = ""             # weights digest of the model the run started from ("": from scratch)

    def __post_init__(self):
        object.__setattr__(self, "channel_mults", tuple(int(c) for c in self.channel_mults))
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}")
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {LR_DECAYS}")
        if self.prediction_type not in PREDICTIONS:
            raise ValueError(f"prediction_type must be one of {PREDICTIONS}")
        for name in ("batch_size", "crop_px", "num_train_timesteps", "sample_steps", "checkpoint_every",
                     "max_particles", "post_train_images", "base_channels", "post_base_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.steps < 0 or self.steps == 0 == self.post_steps:
            raise ValueError("steps must be >= 0, and steps and post_steps not both 0")
        if self.post_steps < 0 or not 0 <= self.val_fraction < 0.5 or self.lr <= 0 or not 0 <= self.ema_decay < 1:
            raise ValueError("post_steps >= 0, 0 <= val_fraction < 0.5, lr > 0, 0 <= ema_decay < 1 required")


LR_DECAYS = ("cosine", "constant")


def architecture_of(model: Denoiser) -> dict:
    """The settings that fix a trained model's networks and units: a run that starts from that model (fine-tuning)
    takes them from it."""
    arch = {"base_channels": model.diffusion.config.base_channels,
            "channel_mults": tuple(model.diffusion.config.channel_mults), "schedule": model.schedule.kind,
            "num_train_timesteps": model.schedule.num_train_timesteps,
            "prediction_type": model.schedule.prediction_type}
    if model.postprocess is not None:
        arch["post_base_channels"] = model.postprocess.config.base_channels
    return arch


def learning_rate(config: TrainConfig, step: int, total: int) -> float:
    """The optimiser's learning rate at ``step`` of ``total``: constant, or cosine annealing (Loshchilov & Hutter
    2017, SGDR eq. 5 without restarts) from ``lr`` down to 5% of it. A function of the step only, so a resumed
    run continues on the same curve (a run given more steps on resume follows the longer curve from there)."""
    if config.lr_decay == "constant" or total <= 1:
        return config.lr
    lo = 0.05 * config.lr
    return lo + 0.5 * (config.lr - lo) * (1 + math.cos(math.pi * min(step, total) / total))


def _set_lr(opt, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


# ---------------------------------------------------------------------------- data
@dataclass
class PairSet:
    noisy: torch.Tensor      # (N, H, W) RELION-normalised
    clean: torch.Tensor      # (N, H, W) on the noisy images' scale
    pixel_size_A: float
    sources: list


def load_training_pairs(data_dirs, max_particles: int = 20000, seed: int = 0) -> PairSet:
    """Read (noisy, clean) particle pairs from GenEM dataset folders (simulate / translate output)."""
    noisy, clean, px, sources = [], [], None, []
    per = max(1, max_particles // max(1, len(data_dirs)))
    rng = np.random.default_rng(seed)
    for d in data_dirs:
        ds = GenemDataset.open(d)
        rows = ds.particles()
        if CLEAN_IMAGE_COLUMN not in rows.columns:
            raise GenemInputError(Path(d) / PARTICLES_STAR, f"no clean twins (column {CLEAN_IMAGE_COLUMN})")
        if len(rows) > per:
            rows = rows.iloc[np.sort(rng.choice(len(rows), per, replace=False))]
        p = ds.particle_pixel_size_A(rows)
        if px is not None and abs(p - px) > 1e-3 * px:
            raise GenemInputError(d, f"pixel size {p} A differs from the other datasets' {px} A")
        px = p
        n = torch.from_numpy(ds.read_particle_images(rows, "rlnImageName"))
        c = torch.from_numpy(ds.read_particle_images(rows, CLEAN_IMAGE_COLUMN))
        if noisy and n.shape[-1] != noisy[0].shape[-1]:
            raise GenemInputError(d, f"box {n.shape[-1]} px differs from the other datasets' {noisy[0].shape[-1]} px")
        nn_, cn = normalize_background_pair_2d(n, c)
        noisy.append(nn_)
        clean.append(cn)
        sources.append({"path": str(Path(d).resolve()), "particles": int(len(rows)),
                        "manifest_seed": ds.manifest.get("seed") if isinstance(ds.manifest, dict) else None})
    if not noisy:
        raise GenemInputError("--data", "no datasets given")
    return PairSet(torch.cat(noisy), torch.cat(clean), px, sources)


def augment_crop(stack: torch.Tensor, crop: int, g: torch.Generator, flip_contrast: bool = False) -> torch.Tensor:
    """Random crop, 90-degree rotation and mirror (and contrast sign if ``flip_contrast``), the same for every
    channel of each item: (B, C, H, W) -> (B, C, crop, crop). Channels are aligned images (noisy, clean, ...).

    The contrast sign is kept by default: at SNR ~0.05 the polarity of a particle cannot be read from the image,
    so a model trained on both polarities hedges between them; GenEM datasets, like RELION extractions with
    --invert_contrast, have protein white."""
    b, ch, h, w = stack.shape
    crop = min(crop, h, w)
    y0 = torch.randint(0, h - crop + 1, (b,), generator=g)
    x0 = torch.randint(0, w - crop + 1, (b,), generator=g)
    ar = torch.arange(crop)
    iy = (y0[:, None] + ar)[:, None, :, None].expand(b, ch, crop, crop)
    ix = (x0[:, None] + ar)[:, None, None, :].expand(b, ch, crop, crop)
    bi = torch.arange(b)[:, None, None, None].expand(b, ch, crop, crop)
    ci = torch.arange(ch)[None, :, None, None].expand(b, ch, crop, crop)
    out = stack[bi, ci, iy, ix]
    out = torch.rot90(out, int(torch.randint(0, 4, (1,), generator=g)), (2, 3))
    if int(torch.randint(0, 2, (1,), generator=g)):
        out = out.flip(-1)
    if not flip_contrast:
        return out
    sign = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)[:, None, None, None]
    return out * sign


# ---------------------------------------------------------------------------- checkpoints
def _save_ckpt(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


_EXTENDABLE = ("steps", "post_steps", "checkpoint_every")


def _compatible(saved: dict, now: dict) -> bool:
    """A run resumes with the same settings, except that it may be given more steps."""
    return {k: v for k, v in saved.items() if k not in _EXTENDABLE} == \
        {k: v for k, v in now.items() if k not in _EXTENDABLE}


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)


def _split(pairs: PairSet, cfg: TrainConfig):
    g = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(len(pairs.noisy), generator=g)
    n_val = int(round(cfg.val_fraction * len(perm)))
    return perm[n_val:], perm[:n_val]


TRAIN_COMMAND = "genem denoise train"
OWN_RECORDS = ("model.pt", "checkpoints")  # a model folder written before the output mark existed


def check_model_folder(out_dir, resume: bool) -> None:
    """Refuse an output folder that is not this command's (:func:`genem.io.outputs.check_out_dir`), that holds a
    finished model, or an unfinished run's checkpoints without ``resume``."""
    out_dir = check_out_dir(out_dir, TRAIN_COMMAND, markers=OWN_RECORDS)
    if resume:
        return
    if (out_dir / "model.pt").exists():
        raise GenemInputError(out_dir, "already holds a trained model; choose another --out")
    if (out_dir / "checkpoints" / "diffusion.pt").exists():
        raise GenemInputError(out_dir, "holds checkpoints of an unfinished run; pass --resume or choose another --out")


def claim_model_folder(out_dir) -> Path:
    """Create and mark the model folder (checked by :func:`check_model_folder`)."""
    return claim_out_dir(out_dir, TRAIN_COMMAND, markers=OWN_RECORDS)


def train_denoiser(data_dirs, out_dir, config: TrainConfig = TrainConfig(), *, device="cpu", resume: bool = False,
                   progress: ProgressCallback | None = None, pairs: PairSet | None = None, init: Denoiser | None = None) -> Path:
    """Train a denoiser on dataset folders and write ``out_dir/model.pt`` (+ model.json, metrics in train.json).

    ``init``: start from this trained model's weights (fine-tuning, e.g. the shipped model on simulations of one's
    own specimen); its architecture, schedule and output units are kept, the data must be at its pixel size.

    Under ``torchrun`` each of N ranks trains on its slice of a global batch of N x ``batch_size``
    (:mod:`genem.distributed`): the same run as one process with batch N x ``batch_size``."""
    out_dir = Path(out_dir)
    ranks = join(device)
    device = ranks.device
    progress = progress if ranks.writer else None
    if init is not None:
        config = config.replace(**architecture_of(init), init_digest=init.weights_digest())
    if config.steps == 0 and init is None:
        raise GenemInputError("--steps", "0 diffusion steps keeps a trained diffusion network: give it with --init")
    check_model_folder(out_dir, resume)
    ckdir = out_dir / "checkpoints"
    ck_diff, ck_post = ckdir / "diffusion.pt", ckdir / "postprocess.pt"
    if pairs is None:
        pairs = load_training_pairs(list(data_dirs), config.max_particles, config.seed)
    if init is not None and abs(pairs.pixel_size_A - init.pixel_size_A) > 1e-3 * init.pixel_size_A:
        raise GenemInputError(pairs.sources[0]["path"] if pairs.sources else out_dir,
                              f"pixel size {pairs.pixel_size_A:g} A differs from the starting model's "
                              f"{init.pixel_size_A:g} A (simulate the training data at the model's pixel size)")
    train_idx, val_idx = _split(pairs, config)
    if len(train_idx) < 2:
        raise GenemInputError(data_dirs[0] if data_dirs else out_dir, "too few training particles")
    if ranks.writer:
        claim_model_folder(out_dir)
        if resume:
            remove_stale_temporaries(out_dir)
    ranks.barrier()
    ntr = pairs.noisy[train_idx]
    ctr = pairs.clean[train_idx]
    # the networks' output units: clean images times target_scale (a fine-tuned model keeps its start's units)
    target_scale = init.target_scale if init is not None else float(1.0 / ctr.std().clamp_min(1e-6))
    torch.manual_seed(config.seed)
    model = UNet(UNetConfig(in_channels=2, out_channels=1, base_channels=config.base_channels,
                            channel_mults=config.channel_mults))
    if init is not None:
        model.load_state_dict(init.diffusion.state_dict())
    model = model.to(device)
    ema = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = DiffusionSchedule(config.schedule, config.num_train_timesteps, config.prediction_type)
    g = torch.Generator().manual_seed(config.seed)
    step, losses, t_start = 0, [], time.time()
    if resume and ck_diff.exists():
        ck = torch.load(ck_diff, map_location="cpu", weights_only=False)
        if not _compatible(global_settings(ck["config"], ck.get("world_size", 1)),
                           global_settings(config.to_dict(), ranks.world_size)):
            raise GenemInputError(ck_diff, "was written with different training settings; use the same ones to resume "
                                           "(on another number of ranks: the same ranks x --batch-size)")
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        g.set_state(ck["rng"])
        step, losses = ck["step"], ck["losses"]
    if step < config.steps and ck_post.exists() and ranks.writer:
        ck_post.unlink()  # the post-processor must be trained on the final diffusion model's outputs
    report(progress, "diffusion", step, config.steps, "step")
    model.train()
    net = ranks.wrap(model)
    batch = config.batch_size * ranks.world_size  # every rank draws the global batch's randomness, keeps its slice
    while step < config.steps:
        idx = torch.randint(0, len(ntr), (batch,), generator=g)
        a = augment_crop(torch.stack([ntr[idx], ctr[idx]], 1), config.crop_px, g, config.flip_contrast)
        level = sched.sample_noise_levels(batch, g)
        eps = torch.randn(a[:, 1:].shape, generator=g)
        a, level, eps = ranks.local_batch(a, level, eps)
        cond, x0 = a[:, :1], a[:, 1:] * target_scale
        xt = sched.add_noise_at_level(x0, eps, level)
        _set_lr(opt, learning_rate(config, step, config.steps))
        pred = net(torch.cat([cond, xt], 1), level)
        target = x0 if config.prediction_type == "sample" else eps
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _ema_update(ema, model, config.ema_decay if step > 50 else 0.0)
        losses += ranks.mean(loss.detach())
        step += 1
        report(progress, "diffusion", step, config.steps, "step", loss=float(np.mean(losses[-20:])))
        if ranks.writer and (step % config.checkpoint_every == 0 or step == config.steps):
            _save_ckpt(ck_diff, {"config": config.to_dict(), "model": model.state_dict(), "ema": ema.state_dict(),
                                 "opt": opt.state_dict(), "rng": g.get_state(), "step": step, "losses": losses,
                                 "target_scale": target_scale, "world_size": ranks.world_size})
    ema.eval()
    den = Denoiser(ema, sched, None, pairs.pixel_size_A, int(pairs.noisy.shape[-1]), target_scale,
                   config.sample_steps)
    post = None
    post_losses: list = []
    if config.post_steps > 0:
        post, post_losses = _train_postprocess(den, ntr, ctr, config, ck_post, ranks, resume, progress,
                                               init.postprocess if init is not None else None)
        den.postprocess = post.eval()
    if not ranks.writer:
        ranks.barrier()  # rank 0 evaluates and writes the model folder
        return out_dir / "model.pt"
    metrics = evaluate_pairs(den, pairs.noisy[val_idx], pairs.clean[val_idx], steps=config.sample_steps) \
        if len(val_idx) else {}
    started = None if init is None else {"model": init.source, "weights_digest": config.init_digest}
    den.meta = {"train_config": config.to_dict(), "parallel": ranks.record(config.batch_size),
                "data": pairs.sources, "started_from": started,
                "n_train": int(len(train_idx)),
                "n_val": int(len(val_idx)), "val_metrics": metrics, "train_seconds": round(time.time() - t_start, 1),
                "final_loss": float(np.mean(losses[-50:])) if losses else None,
                "first_loss": float(np.mean(losses[:50])) if losses else None,
                "post_final_loss": float(np.mean(post_losses[-50:])) if post_losses else None}
    den.save(out_dir)
    write_json_atomic(out_dir / "train.json", {**den.meta, "losses": losses, "post_losses": post_losses})
    ranks.barrier()
    return out_dir / "model.pt"


def _train_postprocess(den: Denoiser, ntr, ctr, config: TrainConfig, ck_post: Path, ranks: Ranks, resume, progress,
                       init_post: PostProcessor | None = None):
    g = torch.Generator().manual_seed(config.seed + 1)
    m = min(config.post_train_images, len(ntr))
    sel = torch.randperm(len(ntr), generator=g)[:m]
    noisy, clean = ntr[sel], ctr[sel]
    # inputs: the diffusion output (default DDIM steps) of each training particle, in the model's scaled units
    report(progress, "post-process inputs", 0, m, "image")

    def diffuse(chunk: int) -> torch.Tensor:  # the ranks share the chunks; each chunk's seed fixes its result
        i = 64 * chunk
        out = den.denoise_normalized(noisy[i:i + 64], steps=config.sample_steps, postprocess=False,
                                     seed=config.seed + i).cpu() * den.target_scale
        report(progress, "post-process inputs", i + len(out), m, "image")
        return out

    diffused = torch.cat(ranks.map_chunks(diffuse, -(-m // 64)))
    torch.manual_seed(config.seed + 2)
    post = PostProcessor(postprocess_config(config.post_base_channels, config.channel_mults))
    if init_post is not None:  # same config: fine-tuning took post_base_channels and channel_mults from the start
        post.load_state_dict(init_post.state_dict())
    post = post.to(ranks.device)
    opt = torch.optim.Adam(post.parameters(), lr=config.lr)
    step, losses = 0, []
    if resume and ck_post.exists():
        ck = torch.load(ck_post, map_location="cpu", weights_only=False)
        post.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        g.set_state(ck["rng"])
        step, losses = ck["step"], ck["losses"]
    report(progress, "post-process", step, config.post_steps, "step")
    post.train()
    net = ranks.wrap(post)
    stacked = torch.stack([noisy, diffused, clean * den.target_scale], 1)
    batch = config.batch_size * ranks.world_size
    while step < config.post_steps:
        idx = torch.randint(0, m, (batch,), generator=g)
        a, = ranks.local_batch(augment_crop(stacked[idx], config.crop_px, g, config.flip_contrast))
        _set_lr(opt, learning_rate(config, step, config.post_steps))
        pred = net(a[:, :1], a[:, 1:2])
        loss = F.mse_loss(pred, a[:, 2:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses += ranks.mean(loss.detach())
        step += 1
        report(progress, "post-process", step, config.post_steps, "step")
        if ranks.writer and (step % config.checkpoint_every == 0 or step == config.post_steps):
            _save_ckpt(ck_post, {"model": post.state_dict(), "opt": opt.state_dict(), "rng": g.get_state(),
                                 "step": step, "losses": losses})
    return post, losses


def evaluate_pairs(den: Denoiser, noisy: torch.Tensor, clean: torch.Tensor, *, steps: int) -> dict:
    """Mean PSNR (dB) on normalised pairs: noisy input, diffusion only, diffusion + post-processing."""
    from genem.metrics import psnr

    out = {"n": int(len(noisy)), "psnr_noisy_dB": float(psnr(noisy, clean).mean())}
    d = torch.cat([den.denoise_normalized(noisy[i:i + 64], steps=steps, postprocess=False, seed=i)
                   for i in range(0, len(noisy), 64)])
    out["psnr_diffusion_dB"] = float(psnr(d, clean).mean())
    if den.postprocess is not None:
        p = torch.cat([den.denoise_normalized(noisy[i:i + 64], steps=steps, seed=i) for i in range(0, len(noisy), 64)])
        out["psnr_postprocessed_dB"] = float(psnr(p, clean).mean())
    out["steps"] = steps
    return {k: (round(v, 3) if isinstance(v, float) and not math.isnan(v) else v) for k, v in out.items()}
