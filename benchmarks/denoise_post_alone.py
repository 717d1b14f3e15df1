"""Fine-tune the shipped post-processor for working alone, (noisy, zeros) -> clean (issue 17, fidelity; not kept).

    python benchmarks/denoise_post_alone.py --data SET_DIR [SET_DIR ...] --out MODEL_DIR [--steps 1200] [--lr 3e-4]

The shipped post-processor fed zeros for the diffusion output (``--steps 0``, a route it was never trained for) is
the one route that keeps real beta-gal detail at 15-57 A; this trains it for that route on GenEM dataset folders
(the six training sets of ``benchmarks/denoise_default_model.sh``), with the training code's crops, augmentation
and learning-rate decay, and writes a model whose default route is the post-processor alone (one network pass).
Score it with ``python benchmarks/denoise_routes.py --model MODEL_DIR --steps 1 --real --data <held-out sets>``
(row "post-only"). Result in docs/denoise.md: below the default route on every synthetic set, and no longer
keeps the real detail.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genem.restore.model import Denoiser  # noqa: E402
from genem.restore.train import (  # noqa: E402
    TrainConfig, _set_lr, _split, augment_crop, learning_rate, load_training_pairs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--max-particles", type=int, default=7200)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = TrainConfig(steps=1, post_steps=a.steps, lr=a.lr, batch_size=16, crop_px=48, max_particles=a.max_particles,
                      seed=0)
    pairs = load_training_pairs(a.data, cfg.max_particles, cfg.seed)
    train_idx, _ = _split(pairs, cfg)
    den = Denoiser.load(None)
    post = copy.deepcopy(den.postprocess).train()
    opt = torch.optim.Adam(post.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(1)
    noisy, clean = pairs.noisy[train_idx], pairs.clean[train_idx]
    stacked = torch.stack([noisy, torch.zeros_like(noisy), clean * den.target_scale], 1)
    t0, losses = time.time(), []
    for step in range(cfg.post_steps):
        batch = augment_crop(stacked[torch.randint(0, len(noisy), (cfg.batch_size,), generator=g)], cfg.crop_px, g)
        _set_lr(opt, learning_rate(cfg, step, cfg.post_steps))
        loss = F.mse_loss(post(batch[:, :1], batch[:, 1:2]), batch[:, 2:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 100 == 0:
            print(f"step {step}: loss (last 100) {sum(losses[-100:]) / len(losses[-100:]):.3f}, "
                  f"{time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    den.postprocess, den.default_steps = post.eval(), 0
    den.meta = {**den.meta, "post_alone_fine_tune": {"data": a.data, "steps": a.steps, "lr": a.lr,
                                                      "particles": len(train_idx)}}
    den.save(a.out)
    print(f"wrote {a.out} ({time.time() - t0:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
