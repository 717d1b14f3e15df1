"""Validated realism during translator training: which real pixels validate, and how real the translation looks.

The real micrographs are split three ways, never overlapping:

- evaluation: the right-hand ``holdout_fraction`` strip of every micrograph (``MODEL/heldout/``, for
  ``genem evaluate realism``; training never looks at it, validation neither);
- validation: with several micrographs, whole micrographs (the last ``val_fraction`` of them, at least one,
  left of their evaluation strips); with one, a strip of ``val_fraction`` of its width just left of the
  evaluation strip;
- training: the rest.

``Validator.score(generator)`` translates a fixed set of simulated tiles and compares them with fixed validation
tiles: ``raps_distance`` (log10 power-spectrum distance) plus the excess accuracy of a feature classifier
(:func:`genem.metrics.realism.feature_c2st_accuracy`, ``accuracy - 0.5``); lower is better, 0 = indistinguishable.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genem.io import atomic_path
from genem.metrics.realism import feature_c2st_accuracy, raps_distance

from .data import grid_tiles, sample_tiles

VAL_TILES = 384


@dataclass(frozen=True)
class RealSplit:
    train_columns: tuple       # per micrograph: (c0, c1) trained on, or None (a validation micrograph)
    val_columns: tuple         # per micrograph: (c0, c1) validated on, or None
    eval_start: tuple          # per micrograph: first column of the evaluation strip


def split_real(widths: list[int], holdout_fraction: float, val_fraction: float) -> RealSplit:
    """Columns for training, validation and evaluation of micrographs of these widths (see the module doc)."""
    ev = [w - int(round(w * holdout_fraction)) for w in widths]
    n = len(widths)
    train, val = [(0, e) for e in ev], [None] * n
    if val_fraction > 0 and n >= 2:
        for i in range(n - max(1, int(round(n * val_fraction))), n):
            train[i], val[i] = None, (0, ev[i])
    elif val_fraction > 0:
        cut = ev[0] - int(round(widths[0] * val_fraction))
        train[0], val[0] = (0, cut), (cut, ev[0])
    return RealSplit(tuple(train), tuple(val), tuple(ev))


class Validator:
    """Fixed validation tiles (real: a grid over the validation columns; simulated: seeded random tiles of the
    training simulation) and the score of a generator on them."""

    def __init__(self, real_images, split: RealSplit, sim_images, sim_masks, tile_px: int, seed: int = 0,
                 n_tiles: int = VAL_TILES):
        tiles = [grid_tiles(img[:, c0:c1], tile_px) for img, cols in zip(real_images, split.val_columns)
                 if cols is not None for c0, c1 in [cols]]
        real = np.concatenate(tiles) if tiles else np.zeros((0, tile_px, tile_px), np.float32)
        rng = np.random.default_rng(seed + 4242)
        self.real = real[rng.permutation(len(real))[:n_tiles]]
        self.sim, _ = sample_tiles(sim_images, tile_px, max(len(self.real), 4), rng, masks=sim_masks)
        self.seed = seed

    @property
    def usable(self) -> bool:
        return len(self.real) >= 8

    @torch.no_grad()
    def score(self, generator, device="cpu") -> dict:
        generator.eval()
        out = [generator(torch.from_numpy(self.sim[i:i + 64])[:, None].to(device)).float().cpu().numpy()[:, 0]
               for i in range(0, len(self.sim), 64)]
        fake = np.concatenate(out)
        raps = raps_distance(self.real, fake)
        acc = feature_c2st_accuracy(self.real, fake, seed=self.seed)
        return {"val_raps_log10": raps, "val_feature_c2st": acc, "val_score": raps + max(acc - 0.5, 0.0)}


VAL_COLUMNS = ("step", "val_raps_log10", "val_feature_c2st", "val_score", "seconds")


class BestValidated:
    """``val_log.tsv`` and ``checkpoints/best.pt`` of a model folder: the best-validated output generator and
    whether ``patience`` validations in a row brought nothing better (then training stops)."""

    def __init__(self, out_dir, patience: int, resume_step: int = 0):
        self.log, self.path = Path(out_dir) / "val_log.tsv", Path(out_dir) / "checkpoints" / "best.pt"
        self.patience = patience
        rows = []
        if resume_step > 0 and self.log.exists():
            lines = self.log.read_text().splitlines()[1:]
            rows = [dict(zip(VAL_COLUMNS, map(float, ln.split("\t")))) for ln in lines if ln.strip()]
            rows = [r for r in rows if r["step"] <= resume_step]
        saved = torch.load(self.path, weights_only=False) if resume_step > 0 and self.path.exists() else None
        if saved is None or saved["step"] > resume_step:  # a best beyond the checkpoint resumed from is void
            self.path.unlink(missing_ok=True)
            rows, saved = [], None
        self.best_step = int(saved["step"]) if saved else None
        self.best_score = float(saved["val_score"]) if saved else np.inf
        self.since_best = sum(r["step"] > (self.best_step or 0) for r in rows)
        with atomic_path(self.log) as tmp:
            Path(tmp).write_text("\n".join(["\t".join(VAL_COLUMNS)] + [
                "\t".join(f"{r[k]:.6g}" for k in VAL_COLUMNS) for r in rows]) + "\n")

    def record(self, step: int, scores: dict, seconds: float, generator) -> None:
        with open(self.log, "a") as f:
            cells = [str(step)] + [f"{scores[k]:.6g}" for k in VAL_COLUMNS[1:-1]] + [f"{seconds:.2f}"]
            f.write("\t".join(cells) + "\n")
        if scores["val_score"] < self.best_score:
            self.best_score, self.best_step, self.since_best = scores["val_score"], step, 0
            with atomic_path(self.path) as tmp:
                torch.save({"step": step, **scores,
                            "generator": {k: v.cpu() for k, v in generator.state_dict().items()}}, tmp)
        else:
            self.since_best += 1

    @property
    def should_stop(self) -> bool:
        return self.since_best >= self.patience

    def best_generator(self, generator):
        """A copy of ``generator`` with the best-validated weights (``generator`` itself when none were kept)."""
        if self.best_step is None:
            return generator
        g = copy.deepcopy(generator)
        g.load_state_dict(torch.load(self.path, weights_only=False)["generator"])
        return g
