"""Noise-translation speed on CPU.

Training: steps per second of a full CUT step (discriminator + generator + mask-guided PatchNCE) at a stated
tile size and batch, with the mask-guided sampling compared against CUT's random sampling (baseline: its
overhead ratio). Inference: seconds per 4096^2 micrograph by overlapping tiles, against a single untiled pass
over a 1024^2 image scaled by area (baseline: the tiling overhead ratio).

    python benchmarks/translate.py [--threads 1] [--steps 20] [--tile-px 128] [--batch-size 4] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genem.translate.networks import GeneratorConfig  # noqa: E402
from genem.translate.tiling import translate_image_tiled  # noqa: E402
from genem.translate.train import TranslateTrainConfig, TranslatorState, train_step  # noqa: E402


def time_training(cfg: TranslateTrainConfig, steps: int) -> float:
    st = TranslatorState(cfg, "cpu")
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    b, t = cfg.batch_size, cfg.tile_px
    x = torch.from_numpy(rng.normal(size=(b, 1, t, t)).astype(np.float32))
    y = torch.from_numpy(rng.normal(size=(b, 1, t, t)).astype(np.float32))
    yy, xx = np.mgrid[0:t, 0:t]
    m = torch.from_numpy(np.stack([((yy - t / 2) ** 2 + (xx - t / 2) ** 2) < (t / 4) ** 2] * b))
    train_step(st, cfg, x, m, y, g)  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(st, cfg, x, m, y, g)
    return steps / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--tile-px", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--size", type=int, default=4096, help="micrograph size for inference")
    ap.add_argument("--infer-tile-px", type=int, default=1024, help="inference tile size")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--json", help="also write the numbers here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    res = {"threads": a.threads, "load_average_1min": os.getloadavg()[0], "cpu_count": os.cpu_count(),
           "torch": torch.__version__}
    gcfg = GeneratorConfig()  # the default generator (16 channels, 2 downsamplings, 4 residual blocks)
    cfg = TranslateTrainConfig(tile_px=a.tile_px, batch_size=a.batch_size, generator=gcfg)
    if not a.skip_train:
        _bench_train(res, cfg, gcfg, a)
    _bench_apply(res, gcfg, a)
    print(f"(threads {a.threads}, load average {res['load_average_1min']:.1f} on {os.cpu_count()} cores)")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


def _bench_train(res, cfg, gcfg, a):
    guided = time_training(cfg, a.steps)
    random_ = time_training(cfg.replace(mask_guided=False), a.steps)
    res["train"] = {"tile_px": a.tile_px, "batch_size": a.batch_size, "nce_patches": cfg.nce_patches,
                    "generator": gcfg.to_dict(), "steps_per_s_mask_guided": guided,
                    "steps_per_s_random_sampling": random_, "mask_guided_overhead_ratio": random_ / guided}
    print(f"train: {guided:.2f} steps/s (tile {a.tile_px}, batch {a.batch_size}, mask-guided); "
          f"CUT random sampling {random_:.2f} steps/s; overhead x{random_ / guided:.2f}", flush=True)


def _bench_apply(res, gcfg, a):
    torch.manual_seed(0)
    from genem.translate.networks import Generator

    gen = Generator(gcfg).eval()
    img = np.random.default_rng(0).normal(size=(a.size, a.size)).astype(np.float32)
    t0 = time.perf_counter()
    translate_image_tiled(gen, img, tile_px=a.infer_tile_px, context_px=48, blend_px=32)
    tiled_s = time.perf_counter() - t0
    small = torch.from_numpy(img[:1024, :1024].copy())[None, None]
    with torch.no_grad():
        gen(small)
        t0 = time.perf_counter()
        gen(small)
        single_s = (time.perf_counter() - t0) * (a.size / 1024) ** 2
    res["apply"] = {"micrograph_px": a.size, "tile_px": a.infer_tile_px, "context_px": 48, "blend_px": 32,
                    "seconds_per_micrograph_tiled": tiled_s, "seconds_single_pass_area_scaled": single_s,
                    "tiling_overhead_ratio": tiled_s / single_s}
    print(f"apply: {tiled_s:.1f} s per {a.size}^2 micrograph (tiles {a.infer_tile_px}, context 48, blend 32); "
          f"untiled pass scaled by area {single_s:.1f} s; tiling overhead x{tiled_s / single_s:.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
