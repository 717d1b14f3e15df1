"""Train a noise translator (simulated -> real micrographs) with CUT's losses and GenEM's mask-guided PatchNCE.

Model folder::

    config.json             training configuration, data sources, pixel size (written first)
    loss_log.tsv            step, losses, guided fraction, seconds (one line per ``log_every`` steps)
    checkpoints/step_NNNNNN.pt   generator, discriminator, projector, optimisers, RNG states (last 3 kept)
    checkpoints/best.pt     the best-validated output generator so far (validate.py)
    val_log.tsv             step, validation RAPS distance, feature-classifier accuracy, score, seconds
    samples/step_NNNNNN.png real / simulated / translated tiles
    heldout/real_NNN.mrc    the right-hand strip of each real micrograph (preprocessed), never trained on nor validated
    model.pt                the finished generator, the best-validated one when validation ran (model.py; written
                            last, atomically: its presence means "finished")
    model.json              what model.pt holds, for people
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genem.config import Config
from genem.distributed import Ranks, global_settings, join
from genem.io import GenemInputError, atomic_path, write_json_atomic, write_mrc
from genem.io.atomic import remove_stale_temporaries
from genem.io.outputs import check_out_dir, claim_out_dir
from genem.progress import ProgressCallback, report

from .data import (RealMicrograph, expand_real_paths, load_simulated_set, prepare_real_micrograph,
                   sample_tiles)
from .model import FORMAT, MODEL_FILE, checkpoint_paths, save_model
from .networks import (DiscriminatorConfig, Generator, GeneratorConfig, PatchDiscriminator, lsgan_loss,
                       saved_generator_config)
from .patchnce import PatchProjector, compute_patchnce_loss
from .validate import BestValidated, Validator, split_real

@dataclass(frozen=True)
class TranslateTrainConfig(Config):
    config_name = "translate train config"

    steps: int = 6000                  # at most; validation stops it earlier (see patience, time_limit_min)
    tile_px: int = 64
    batch_size: int = 4
    lr: float = 5e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_gan: float = 1.0
    lambda_nce: float = 1.0
    nce_identity: bool = True          # CUT's identity NCE on real tiles (G(real) keeps real content)
    nce_temperature: float = 0.07
    nce_patches: int = 128
    nce_dim: int = 256
    mask_guided: bool = True           # GenEM: particle vs background negatives
    min_mask_cells: int = 8            # a class needs this many cells at a layer for guided sampling
    holdout_fraction: float = 0.25     # right-hand strip of each real micrograph kept out of training
    val_fraction: float = 0.15         # validation: whole micrographs (this fraction, >= 1) when there are several,
                                       # else a strip left of the held-out one; 0 = no validation
    val_every: int = 250               # steps between validations (validated realism, see validate.py)
    patience: int = 4                  # stop after this many validations without a better score
    time_limit_min: float | None = 28.0  # stop (keeping the best-validated model) after this many minutes
    clip_sigma: float = 6.0
    real_pixel_size_A: float | None = None
    max_micrographs: int | None = None
    checkpoint_every: int = 500
    grid_every: int = 500
    log_every: int = 10
    keep_checkpoints: int = 3
    ema_decay: float = 0.999           # exponential moving average of the generator (0 = off); model.pt holds it
    seed: int = 0
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.nce_patches < 2:
            raise ValueError("steps, batch_size must be >= 1 and nce_patches >= 2")
        mult = 2 ** self.generator.n_down
        if self.tile_px < 32 or self.tile_px % mult:
            raise ValueError(f"tile_px must be >= 32 and a multiple of {mult}")
        if not 0.0 <= self.holdout_fraction < 1.0 or not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("holdout_fraction and val_fraction must be in [0, 1)")
        if self.val_every < 1 or self.patience < 1 or (self.time_limit_min is not None and self.time_limit_min <= 0):
            raise ValueError("val_every and patience must be >= 1, time_limit_min > 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must be in [0, 1)")
        if not self.nce_temperature > 0:
            raise ValueError("nce_temperature must be > 0")
        for k in ("checkpoint_every", "grid_every", "log_every", "keep_checkpoints"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1")


class TranslatorState:
    """Networks and optimisers of one training run."""

    def __init__(self, config: TranslateTrainConfig, device):
        torch.manual_seed(config.seed)
        self.G = Generator(config.generator).to(device)
        self.D = PatchDiscriminator(config.discriminator).to(device)
        self.F = PatchProjector(self.G.feature_channels, config.nce_dim).to(device)
        betas = (config.beta1, config.beta2)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=config.lr, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=config.lr, betas=betas)
        self.opt_F = torch.optim.Adam(self.F.parameters(), lr=config.lr, betas=betas)
        self.ema_decay = config.ema_decay
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False) if config.ema_decay > 0 else None
        self.n_updates = 0

    @torch.no_grad()
    def update_ema(self):
        """EMA of the generator weights with TF's warm-up: decay_t = min(decay, (1 + t) / (10 + t))."""
        self.n_updates += 1
        if self.G_ema is None:
            return
        d = min(self.ema_decay, (1 + self.n_updates) / (10 + self.n_updates))
        for pe, p in zip(self.G_ema.parameters(), self.G.parameters()):
            pe.mul_(d).add_(p.detach(), alpha=1 - d)

    @property
    def G_out(self) -> Generator:
        """The generator to use for outputs: the EMA one when enabled."""
        return self.G_ema if self.G_ema is not None else self.G

    def state_dict(self):
        sd = {k: getattr(self, k).state_dict() for k in ("G", "D", "F", "opt_G", "opt_D", "opt_F")}
        if self.G_ema is not None:
            sd["G_ema"] = self.G_ema.state_dict()
        sd["n_updates"] = self.n_updates
        return sd

    def load_state_dict(self, sd):
        sd = dict(sd)
        self.n_updates = int(sd.pop("n_updates", 0))
        for k, v in sd.items():
            getattr(self, k).load_state_dict(v)


def train_step(state: TranslatorState, config: TranslateTrainConfig, x, m, y,
               generator: torch.Generator, ranks: Ranks = Ranks()) -> dict:
    """One CUT step: discriminator (LSGAN), then generator + projector (LSGAN + PatchNCE); on several ranks the
    gradients are averaged over them before each update."""
    G, D, Fp = state.G, state.D, state.F
    G.train()
    b = x.shape[0]
    inp = torch.cat([x, y]) if config.nce_identity else x
    out = G(inp)
    fake = out[:b]
    # discriminator
    for p in D.parameters():
        p.requires_grad_(True)
    loss_d = 0.5 * (lsgan_loss(D(fake.detach()), False) + lsgan_loss(D(y), True))
    state.opt_D.zero_grad(set_to_none=True)
    loss_d.backward()
    ranks.average_gradients(D)
    state.opt_D.step()
    # generator and projection heads
    for p in D.parameters():
        p.requires_grad_(False)
    loss_gan = lsgan_loss(D(fake), True)
    masks = None
    if config.mask_guided:
        masks = m if not config.nce_identity else torch.cat([m, torch.zeros_like(m)])  # real tiles: no mask
    feats_src = G.encode(inp)
    feats_out = G.encode(out)
    # with identity NCE the sim half and the real half are separate images of one batch: mask-guided sampling on
    # the first (where the mask allows), CUT's random sampling on the second (its masks are empty)
    loss_nce, info = compute_patchnce_loss(feats_src, feats_out, Fp, masks_bhw=masks, n_patches=config.nce_patches,
                                           temperature=config.nce_temperature,
                                           min_per_class=config.min_mask_cells, generator=generator)
    guided = info["guided_fraction"] * (2 if config.nce_identity else 1)
    loss_g = config.lambda_gan * loss_gan + config.lambda_nce * loss_nce
    state.opt_G.zero_grad(set_to_none=True)
    state.opt_F.zero_grad(set_to_none=True)
    loss_g.backward()
    ranks.average_gradients(G, Fp)
    state.opt_G.step()
    state.opt_F.step()
    state.update_ema()
    return {"loss_D": float(loss_d.detach()), "loss_G_gan": float(loss_gan.detach()), "loss_nce": float(loss_nce.detach()),
            "guided_fraction": float(guided)}


LOG_COLUMNS = ("step", "loss_D", "loss_G_gan", "loss_nce", "guided_fraction", "seconds")


def read_loss_log(model_dir) -> list[dict]:
    path = Path(model_dir) / "loss_log.tsv"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    cols = lines[0].split("\t")
    return [dict(zip(cols, map(float, ln.split("\t")))) for ln in lines[1:] if ln.strip()]


def _load_real(real_paths, target_px: float, config: TranslateTrainConfig) -> list[RealMicrograph]:
    out = []
    for p in real_paths:
        rm = prepare_real_micrograph(p, target_px, pixel_size_A=config.real_pixel_size_A,
                                     clip_sigma=config.clip_sigma)
        train_w = rm.image.shape[1] - int(round(rm.image.shape[1] * config.holdout_fraction))
        if rm.image.shape[0] < config.tile_px or train_w < config.tile_px:
            raise GenemInputError(p, f"only {rm.image.shape[0]}x{train_w} px for training at "
                                     f"{rm.pixel_size_A:.3g} A/px; smaller than the {config.tile_px} px tile")
        out.append(rm)
    return out


def _save_grid(path, real, sim, fake):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("real", real), ("simulated", sim), ("translated", fake)]
    n = real.shape[0]
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.1), squeeze=False)
    for i, (name, tiles) in enumerate(rows):
        for j in range(n):
            ax = axes[i, j]
            t = tiles[j]
            lo, hi = np.percentile(t, [1, 99])
            ax.imshow(t, cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


TRAIN_COMMAND = "genem translate train"
OWN_RECORDS = (MODEL_FILE, "checkpoints")  # a model folder written before the output mark existed


def train_translator(config: TranslateTrainConfig, simulated_dir, real, out_dir, *, device: str = "cpu",
                     resume: bool = False, progress: ProgressCallback | None = None,
                     command: list[str] | None = None) -> Path:
    """Train on a simulated dataset folder and real micrographs (paths / globs / folders); return ``out_dir``.

    ``resume=True`` continues from the newest checkpoint in ``out_dir`` with the configuration and data saved there,
    except ``steps``, taken from ``config`` (more to extend a run, or a checkpointed step to finish early); the
    continued run draws the same tiles it would have drawn without the stop.

    Under ``torchrun`` each of N ranks trains on its slice of the global batch of N x ``batch_size`` tiles
    (:mod:`genem.distributed`); a resumed run keeps the global batch on any number of ranks that divides it.
    """
    out_dir = check_out_dir(out_dir, TRAIN_COMMAND, markers=OWN_RECORDS)
    ranks = join(device)
    dev = ranks.device
    progress = progress if ranks.writer else None
    cfg_path = out_dir / "config.json"
    if resume:
        if not cfg_path.exists():
            raise GenemInputError(out_dir, "nothing to resume (no config.json)")
        saved = json.loads(cfg_path.read_text())
        saved["config"]["generator"] = saved_generator_config(saved["config"].get("generator", {}))
        batch = global_settings(saved["config"], saved.get("parallel", {}).get("world_size", 1))["batch_size"]
        if batch % ranks.world_size:
            raise GenemInputError(cfg_path, f"global batch {batch} does not split over {ranks.world_size} ranks")
        config = TranslateTrainConfig.from_dict(saved["config"], cfg_path).replace(
            steps=config.steps, batch_size=batch // ranks.world_size)
        simulated_dir = saved["simulated"]
        real = saved["real"]
    else:
        if out_dir.exists() and ((out_dir / MODEL_FILE).exists() or checkpoint_paths(out_dir)):
            raise GenemInputError(out_dir, "already holds a model or checkpoints; pass --resume or choose a new --out")
    real_paths = expand_real_paths(real)
    sim = load_simulated_set(simulated_dir, clip_sigma=config.clip_sigma, max_micrographs=config.max_micrographs)
    for img in sim.images:
        if min(img.shape) < config.tile_px:
            raise GenemInputError(simulated_dir, f"micrographs {img.shape} are smaller than the {config.tile_px} px tile")
    reals = _load_real(real_paths, sim.pixel_size_A, config)
    split = split_real([r.image.shape[1] for r in reals], config.holdout_fraction, config.val_fraction)
    for r, cols in zip(reals, split.train_columns):
        if cols is not None and cols[1] - cols[0] < config.tile_px:
            raise GenemInputError(r.path, f"only {cols[1] - cols[0]} columns left for training beside the validation "
                                          f"and held-out strips; smaller than the {config.tile_px} px tile")
    train_idx = [i for i, c in enumerate(split.train_columns) if c is not None]
    real_images = [reals[i].image for i in train_idx]
    train_cols = [split.train_columns[i] for i in train_idx]
    validator = Validator([r.image for r in reals], split, sim.images, sim.masks, config.tile_px, config.seed)

    if ranks.writer:
        claim_out_dir(out_dir, TRAIN_COMMAND, markers=OWN_RECORDS)
        remove_stale_temporaries(out_dir)
    if ranks.writer and not resume:
        write_json_atomic(cfg_path, {
            "format": FORMAT, "config": config.to_dict(), "simulated": str(Path(simulated_dir).resolve()),
            "real": [str(Path(p).resolve()) for p in real_paths], "pixel_size_A": sim.pixel_size_A,
            "real_sources": [{"path": r.path, "source_pixel_size_A": r.source_pixel_size_A,
                              "source_shape": list(r.source_shape), "source_dtype": r.source_dtype,
                              "pixel_size_A": r.pixel_size_A, "shape": list(r.image.shape),
                              "train_columns": c and list(c), "validation_columns": v and list(v),
                              "heldout_start_column": e}
                             for r, c, v, e in zip(reals, split.train_columns, split.val_columns, split.eval_start)],
            "device": str(dev), "parallel": ranks.record(config.batch_size), "command": command})
        if config.holdout_fraction > 0:
            for i, (r, c1) in enumerate(zip(reals, split.eval_start)):
                write_mrc(out_dir / "heldout" / f"real_{i:03d}.mrc", r.image[:, c1:], r.pixel_size_A)
    elif ranks.writer:
        cfg = json.loads(cfg_path.read_text())
        cfg["config"].update(steps=config.steps, batch_size=config.batch_size)
        cfg["parallel"] = ranks.record(config.batch_size)
        write_json_atomic(cfg_path, cfg)

    state = TranslatorState(config, dev)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed + 1)
    start = 0
    if resume:
        cks = checkpoint_paths(out_dir)
        if cks:
            ck = torch.load(cks[-1], map_location=dev, weights_only=False)
            state.load_state_dict(ck["state"])
            rng.bit_generator.state = ck["numpy_rng"]
            gen.set_state(ck["torch_gen"])
            start = int(ck["step"])
        if start > config.steps:
            raise GenemInputError(out_dir, f"checkpoint is at step {start}, beyond the requested {config.steps} steps")
        if start < config.steps and ranks.writer:  # extending a finished run: the old model is no longer this
            for f in (MODEL_FILE, "model.json"):
                (out_dir / f).unlink(missing_ok=True)
    if ranks.writer:
        _truncate_log(out_dir / "loss_log.tsv", start)
    ranks.broadcast_parameters(state.G, state.D, state.F)

    vis_rng = np.random.default_rng(config.seed + 12345)
    vis_sim, _ = sample_tiles(sim.images, config.tile_px, 6, vis_rng, masks=sim.masks)
    vis_real, _ = sample_tiles(real_images, config.tile_px, 6, vis_rng, column_ranges=train_cols)

    t0 = time.time()
    log_path = out_dir / "loss_log.tsv"
    acc: dict[str, list[float]] = {}
    shown: dict[str, float] = {}
    best = BestValidated(out_dir, config.patience, start) if ranks.writer else None  # rank 0 records and decides
    validating = config.val_fraction > 0 and validator.usable
    stop_reason, done = None, start
    report(progress, "translate train", start, config.steps, "step")
    batch = config.batch_size * ranks.world_size  # every rank draws the global batch's tiles, keeps its slice
    for step in range(start, config.steps):
        xs, ms = sample_tiles(sim.images, config.tile_px, batch, rng, masks=sim.masks)
        ys, _ = sample_tiles(real_images, config.tile_px, batch, rng, column_ranges=train_cols)
        x, m, y = ranks.local_batch(torch.from_numpy(xs)[:, None], torch.from_numpy(ms), torch.from_numpy(ys)[:, None])
        losses = train_step(state, config, x, m, y, gen, ranks)
        losses = dict(zip(losses, ranks.mean(*losses.values())))
        for k, v in losses.items():
            acc.setdefault(k, []).append(v)
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            row = {k: float(np.mean(v)) for k, v in acc.items()}
            acc = {}
            if ranks.writer:
                _append_log(log_path, done, row, time.time() - t0)
            shown = dict(D=row["loss_D"], G=row["loss_G_gan"], nce=row["loss_nce"])
        if ranks.writer:  # rank 0 alone samples, validates, checkpoints and decides whether to stop
            if done % config.grid_every == 0 or done == config.steps:
                with torch.no_grad():
                    state.G_out.eval()
                    fake = state.G_out(torch.from_numpy(vis_sim)[:, None].to(dev)).cpu().numpy()[:, 0]
                _save_grid(out_dir / "samples" / f"step_{done:06d}.png", vis_real, vis_sim, fake)
            if validating and done % config.val_every == 0:
                best.record(done, validator.score(state.G_out, dev), time.time() - t0, state.G_out)
                if best.should_stop:
                    stop_reason = f"no better validation score in {config.patience} validations"
            if config.time_limit_min is not None and time.time() - t0 > 60 * config.time_limit_min:
                stop_reason = f"time limit ({config.time_limit_min:g} min)"
            if done % config.checkpoint_every == 0 or done == config.steps or stop_reason:
                _save_checkpoint(out_dir, done, state, rng, gen, config)
            report(progress, "translate train", done, config.steps, "step", **shown)
        if validating or config.time_limit_min is not None:
            stop_reason = ranks.from_writer(stop_reason)  # every rank stops at the same step
        if stop_reason:
            break
    if not ranks.writer:
        ranks.barrier()  # rank 0 writes the model
        return out_dir
    summary = {"steps": done, "best_validated_step": best.best_step, "stop_reason": stop_reason or "steps done",
               "best_val_score": None if best.best_step is None else best.best_score}
    save_model(out_dir / MODEL_FILE, best.best_generator(state.G_out), config, sim.pixel_size_A,
               extra={**summary, "simulated": str(simulated_dir), "real": [str(p) for p in real_paths]})
    write_json_atomic(out_dir / "model.json", {
        "format": FORMAT, "file": MODEL_FILE, "pixel_size_A": sim.pixel_size_A, **summary,
        "generator": config.generator.to_dict(), "clip_sigma": config.clip_sigma,
        "heldout": sorted(str(p.relative_to(out_dir)) for p in (out_dir / "heldout").glob("*.mrc")),
        "parallel": ranks.record(config.batch_size),
        "translate_apply": "genem translate apply --model THIS_FOLDER --simulated SIM_DIR --out OUT_DIR"})
    ranks.barrier()
    return out_dir


def _truncate_log(path: Path, step: int):
    header = "\t".join(LOG_COLUMNS) + "\n"
    lines = [header]
    if step > 0 and path.exists():
        for ln in path.read_text().splitlines()[1:]:
            if ln.strip() and float(ln.split("\t")[0]) <= step:
                lines.append(ln + "\n")
    with atomic_path(path) as tmp:
        Path(tmp).write_text("".join(lines))


def _append_log(path: Path, step: int, row: dict, seconds: float):
    vals = [str(step)] + [f"{row.get(k, float('nan')):.6g}" for k in LOG_COLUMNS[1:-1]] + [f"{seconds:.2f}"]
    with open(path, "a") as f:
        f.write("\t".join(vals) + "\n")


def _save_checkpoint(out_dir: Path, step: int, state: TranslatorState, rng, gen, config):
    path = out_dir / "checkpoints" / f"step_{step:06d}.pt"
    with atomic_path(path) as tmp:
        torch.save({"step": step, "state": state.state_dict(), "numpy_rng": rng.bit_generator.state,
                    "torch_gen": gen.get_state(), "config": config.to_dict()}, tmp)
    for old in checkpoint_paths(out_dir)[:-config.keep_checkpoints]:
        old.unlink()
