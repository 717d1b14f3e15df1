"""Training the picker on GenEM dataset folders (exact centres) and/or real labelled micrographs, mixed.

Every micrograph is binned to the picker's pixel size and normalised once; each step draws random square patches
(random micrograph, position, rotation by 90 degrees and flip). The target is 1 within a quarter diameter of a true
centre, 0 elsewhere; the loss is binary cross-entropy with positives and negatives weighted equally. At the end the
default threshold is the one with the best F1 on the training micrographs (evaluation protocol of
:mod:`genem.pick.metrics`), and it is recorded in the model folder with where it was chosen.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from genem.config import Config
from genem.distributed import global_settings, join
from genem.io import GenemDataset, GenemInputError, write_text_atomic
from genem.io.atomic import atomic_path, remove_stale_temporaries
from genem.io.outputs import check_out_dir, claim_out_dir
from genem.progress import ProgressCallback, report

from .apply import drop_edge_picks, find_peaks, NMS_RADIUS_FRAC
from .data import LabelledMicrograph, dataset_diameter_A, dataset_pairs, load_labelled, pair_labels, \
    real_diameter_px
from .metrics import score_micrographs
from .model import META_FILE, WEIGHTS_FILE, Picker, PickerMeta, PickerNet

CHECKPOINT_FILE = "checkpoint.pt"
LOSS_FILE = "loss.tsv"
TARGET_DIAMETER_PX = 16.0   # default picker pixel size: the particle spans this many pixels (never finer than data)
THRESHOLD_MICROGRAPHS = 16  # at most this many training micrographs choose the threshold


@dataclass(frozen=True)
class PickTrainConfig(Config):
    """Picker training settings (frozen; unknown keys are refused)."""

    config_name: ClassVar[str] = "picker training config"

    steps: int = 2000
    batch_size: int = 8
    patch_px: int = 64
    lr: float = 1e-3
    seed: int = 0
    width: int = 16
    depth: int = 2
    pixel_size_A: float | None = None         # default: particle diameter / 16, never finer than the data
    particle_diameter_A: float | None = None  # default: from the masks of the data
    real_pixel_size_A: float | None = None    # pixel size of real micrographs without one (PNG renders)
    target_radius_frac: float = 0.25
    checkpoint_every: int = 200
    log_every: int = 10

    def __post_init__(self):
        for name in ("steps", "batch_size", "patch_px", "width", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise GenemInputError(f"--{name.replace('_', '-')}", "must be >= 1")
        if self.patch_px % 2 ** self.depth:
            raise GenemInputError("--patch-px", f"must be a multiple of {2 ** self.depth}")


def _resolve_geometry(cfg: PickTrainConfig, datasets, real_pairs, init_meta: PickerMeta | None):
    diameter = cfg.particle_diameter_A or (init_meta.particle_diameter_A if init_meta else None)
    data_px = [GenemDataset.open(d).pixel_size_A for d in datasets]
    if real_pairs:
        if cfg.real_pixel_size_A is None:
            raise GenemInputError("--real-pixel-size-A", "needed for the real micrographs (PNG has no pixel size)")
        data_px.append(cfg.real_pixel_size_A)
    if diameter is None:
        if datasets:
            diameter = dataset_diameter_A(GenemDataset.open(datasets[0]))
        elif real_pairs and (d_px := real_diameter_px(real_pairs)):
            diameter = d_px * cfg.real_pixel_size_A
        else:
            raise GenemInputError("--diameter-A", "particle diameter unknown (no masks to measure it): give it")
    px = cfg.pixel_size_A or (init_meta.pixel_size_A if init_meta else max(max(data_px), diameter / TARGET_DIAMETER_PX))
    if init_meta and abs(px - init_meta.pixel_size_A) > 1e-3 * px:
        raise GenemInputError("--init", f"picker is at {init_meta.pixel_size_A:g} A/px, training asks {px:g}")
    return float(px), float(diameter)


def target_map(shape, centres_px, radius_px: float) -> np.ndarray:
    """1 within ``radius_px`` of any centre, else 0."""
    t = np.zeros(shape, np.float32)
    r = max(1.0, radius_px)
    yy, xx = np.mgrid[-int(r):int(r) + 1, -int(r):int(r) + 1]
    disk = (xx ** 2 + yy ** 2) <= r * r
    for x, y in np.asarray(centres_px).reshape(-1, 2):
        cx, cy = int(round(x)), int(round(y))
        ys, xs = yy[disk] + cy, xx[disk] + cx
        ok = (ys >= 0) & (ys < shape[0]) & (xs >= 0) & (xs < shape[1])
        t[ys[ok], xs[ok]] = 1.0
    return t


def _patches(items, targets, n: int, size: int, g: torch.Generator):
    xs, ts = [], []
    for _ in range(n):
        k = int(torch.randint(len(items), (1,), generator=g))
        img, tgt = items[k].image, targets[k]
        h, w = img.shape
        if h < size or w < size:
            ph, pw = max(0, size - h), max(0, size - w)
            img = np.pad(img, ((0, ph), (0, pw)), mode="reflect")
            tgt = np.pad(tgt, ((0, ph), (0, pw)))
            h, w = img.shape
        y0 = int(torch.randint(h - size + 1, (1,), generator=g))
        x0 = int(torch.randint(w - size + 1, (1,), generator=g))
        rot = int(torch.randint(4, (1,), generator=g))
        flip = bool(torch.randint(2, (1,), generator=g))
        pair = torch.from_numpy(np.stack([img[y0:y0 + size, x0:x0 + size], tgt[y0:y0 + size, x0:x0 + size]]))
        pair = torch.rot90(pair, rot, (1, 2))
        if flip:
            pair = torch.flip(pair, (2,))
        xs.append(pair[0])
        ts.append(pair[1])
    return torch.stack(xs)[:, None], torch.stack(ts)[:, None]


def balanced_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy where positive and negative pixels carry equal total weight."""
    pos = target > 0.5
    n_pos, n_neg = pos.sum().clamp(min=1), (~pos).sum().clamp(min=1)
    w = torch.where(pos, 0.5 / n_pos, 0.5 / n_neg)
    return (w * F.binary_cross_entropy_with_logits(logits, target, reduction="none")).sum()


def choose_threshold(picker: Picker, items: list[LabelledMicrograph]) -> tuple[float, dict]:
    """Best-F1 threshold of ``picker`` on ``items`` (binned micrographs with centres), and the scores there."""
    d = picker.meta.diameter_px
    scored = []
    for it in items[:THRESHOLD_MICROGRAPHS]:
        xy, s = find_peaks(picker.heatmap(it.image), NMS_RADIUS_FRAC * d)
        xy, s = drop_edge_picks(xy, s, it.image.shape, d / 2)
        scored.append((xy, s, it.centres_px))
    res = score_micrographs(scored, d / 2)
    thr = res["best"]["threshold"]
    return (0.5 if thr is None else float(thr)), {"auprc": res["auprc"], **res["best"]}


TRAIN_COMMAND = "genem pick train"


def train_picker(datasets=(), out_dir=None, config: PickTrainConfig = PickTrainConfig(), *, real_labels=(),
                 real_micrographs=(), init=None, resume: bool = False, device: str = "cpu",
                 progress: ProgressCallback | None = None) -> Path:
    """Train a picker into ``out_dir`` (see :mod:`genem.pick.model` for the folder); returns the folder.

    Under ``torchrun`` each of N ranks trains on its slice of the global batch of N x ``batch_size`` patches
    (:mod:`genem.distributed`); the class balance of the loss is taken over each rank's slice."""
    started = time.time()
    datasets = [str(d) for d in datasets]
    if not datasets and not real_labels:
        raise GenemInputError("--data", "no training data: give GenEM datasets and/or --real-labels")
    if real_labels and not real_micrographs:
        raise GenemInputError("--real-micrographs", "needed with --real-labels")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GenemInputError("--device", "CUDA requested but not available")
    check_out_dir(out_dir, TRAIN_COMMAND, markers=(META_FILE, CHECKPOINT_FILE))
    ranks = join(device)
    device = str(ranks.device)
    progress = progress if ranks.writer else None
    init_picker = Picker.load(init) if init else None
    if init_picker and (init_picker.meta.width, init_picker.meta.depth) != (config.width, config.depth):
        raise GenemInputError("--init", f"picker has width {init_picker.meta.width}, depth {init_picker.meta.depth}; "
                                        "give the same --width")
    real_pairs = pair_labels(real_labels, real_micrographs) if real_labels else []
    px, diameter = _resolve_geometry(config, datasets, real_pairs, init_picker.meta if init_picker else None)
    items: list[LabelledMicrograph] = []
    for d in datasets:
        items += load_labelled(dataset_pairs(d), px, "synthetic")
    items += load_labelled([(m, lab, config.real_pixel_size_A) for m, lab in real_pairs], px, "real",
                           diameter_px=diameter / config.real_pixel_size_A if real_pairs else None)
    out = Path(out_dir)
    if ranks.writer:
        claim_out_dir(out, TRAIN_COMMAND, markers=(META_FILE, CHECKPOINT_FILE))
    ranks.barrier()
    if (out / META_FILE).exists() and not resume:
        raise GenemInputError(out, "holds a trained picker: choose a new --out, or --resume to train further")
    if (out / CHECKPOINT_FILE).exists() and not resume:
        raise GenemInputError(out, "holds an unfinished training: add --resume, or choose a new --out")
    if ranks.writer:
        remove_stale_temporaries(out)

    meta = PickerMeta(px, diameter, config.width, config.depth)
    torch.manual_seed(config.seed)
    picker = Picker(meta, init_picker.net if init_picker else PickerNet(config.width, config.depth), device=device)
    opt = torch.optim.Adam(picker.net.parameters(), lr=config.lr)
    g = torch.Generator().manual_seed(config.seed)
    step, history = 0, []
    ckpt_path = out / CHECKPOINT_FILE
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        if {k: v for k, v in global_settings(ck["config"], ck.get("world_size", 1)).items() if k != "steps"} != \
                {k: v for k, v in global_settings(asdict(config), ranks.world_size).items() if k != "steps"}:
            raise GenemInputError(ckpt_path, "was made with other training settings; choose a new --out")
        picker.net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        g.set_state(ck["rng"])
        step, history = int(ck["step"]), list(ck["history"])

    r_t = config.target_radius_frac * meta.diameter_px
    targets = [target_map(it.image.shape, it.centres_px, r_t) for it in items]
    picker.net.train()

    def save_checkpoint():
        with atomic_path(ckpt_path) as tmp:
            torch.save({"net": picker.net.state_dict(), "opt": opt.state_dict(), "rng": g.get_state(), "step": step,
                        "history": history, "config": asdict(config), "world_size": ranks.world_size}, tmp)
        write_text_atomic(out / LOSS_FILE, "step\tloss\n" + "".join(f"{s}\t{v:.6f}\n" for s, v in history))

    running, n_run = 0.0, 0
    net = ranks.wrap(picker.net)
    while step < config.steps:  # every rank draws the global batch's patches and keeps its slice
        x, t = ranks.local_batch(*_patches(items, targets, config.batch_size * ranks.world_size, config.patch_px, g))
        loss = balanced_bce(net(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        running, n_run = running + ranks.mean(loss.detach())[0], n_run + 1
        if step % config.log_every == 0 or step == config.steps:
            history.append((step, running / n_run))
            running, n_run = 0.0, 0
            report(progress, "pick train", step, config.steps, "step", loss=history[-1][1])
        if ranks.writer and (step % config.checkpoint_every == 0 or step == config.steps):
            save_checkpoint()
    if not ranks.writer:
        ranks.barrier()  # rank 0 chooses the threshold and writes the picker
        return out

    threshold, at = choose_threshold(picker, items)
    n_thr = min(len(items), THRESHOLD_MICROGRAPHS)
    final = picker.with_meta(threshold=threshold,
                             threshold_source=f"best F1 on {n_thr} training micrographs ({at['f1']:.3f})",
                             training={"datasets": datasets, "real_labels": [str(lab) for _, lab in real_pairs],
                                       "n_micrographs": len(items), "init": str(init) if init else None,
                                       "config": asdict(config), "device": device,
                                       "parallel": ranks.record(config.batch_size),
                                       "final_loss": history[-1][1] if history else None,
                                       "training_micrographs_score": at, "wall_time_s": time.time() - started})
    saved = final.save(out)
    ranks.barrier()
    return saved
