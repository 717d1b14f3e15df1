"""Noise-translation speed on CPU.

Training: steps per second of a full CUT step (discriminator + generator + mask-guided PatchNCE) at a stated
tile size and batch, with the mask-guided sampling compared against CUT's random sampling (baseline: its
overhead ratio). Inference: seconds per 4096^2 micrograph, the new path against the old one (before issue 20)
in the same run (baseline: the old path's time).

    python benchmarks/translate.py [--threads 2] [--steps 20] [--tile-px 64] [--batch-size 4] [--skip-train]
                                   [--json out.json]
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
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--tile-px", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--size", type=int, default=4096, help="micrograph size for inference")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--json", help="also write the numbers here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    res = {"threads": a.threads, "load_average_1min": os.getloadavg()[0], "cpu_count": os.cpu_count(),
           "torch": torch.__version__}
    gcfg = GeneratorConfig()  # the default generator (8 channels, 2 downsamplings, 3 residual blocks)
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


def _old_translate(gen, img, tile_px=1024, context_px=48, blend_px=32):
    """The inference path before issue 20, as it was: fixed 1024 px tiles, the networks' reflect padding,
    contiguous (NCHW) tensors under no_grad."""
    from genem.ops import blend_tiles_2d, blend_window_1d

    before, inner = context_px + blend_px, 2 * context_px + blend_px
    win = blend_window_1d(tile_px, context_px, blend_px)
    with torch.no_grad():
        return blend_tiles_2d(lambda t: gen.eval()(t[:, None])[:, 0], img, tile_hw=(tile_px, tile_px),
                              step_hw=(tile_px - inner,) * 2, window_hw=(win, win), pad_px=before)


def _bench_apply(res, gcfg, a):
    """Seconds per micrograph: the old path (old default generator: 16 channels, 4 blocks, nearest upsampling, no
    full-resolution path; old tiling) against the new one (default generator, even tiles up to 2048 px, zero padding,
    channels-last, inference mode), plus the old generator on the new path (what the tiling/runtime alone gives)."""
    from genem.translate.networks import Generator

    torch.manual_seed(0)
    old_g = Generator(GeneratorConfig(base_channels=16, n_blocks=4, antialias=False, skip=False)).eval()
    new_g = Generator(gcfg).eval()
    img = np.random.default_rng(0).normal(size=(a.size, a.size)).astype(np.float32)
    warm = img[:256, :256].copy()
    _old_translate(old_g, warm, tile_px=256)  # first calls pay one-off set-up costs; keep them out of the timing
    translate_image_tiled(old_g, warm)
    translate_image_tiled(new_g, warm)
    times = {}
    for name, fn in (("old_path", lambda: _old_translate(old_g, img)),
                     ("old_generator_new_path", lambda: translate_image_tiled(old_g, img)),
                     ("new_path", lambda: translate_image_tiled(new_g, img))):
        t0 = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - t0
        print(f"apply {name}: {times[name]:.1f} s per {a.size}^2 micrograph", flush=True)
    res["apply"] = {"micrograph_px": a.size, "seconds": times, "generator_new": gcfg.to_dict(),
                    "speedup_new_vs_old": times["old_path"] / times["new_path"],
                    "speedup_tiling_runtime_only": times["old_path"] / times["old_generator_new_path"]}
    print(f"apply: new path x{times['old_path'] / times['new_path']:.1f} faster than the old one "
          f"(tiling/runtime alone x{times['old_path'] / times['old_generator_new_path']:.1f})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
