"""Throughput of the GenEM denoiser on CPU (particles/s) at box 64 and 128, beside Topaz-Denoise's general
model on the same images in the same run.

Images: box-64 particles of a GenEM dataset folder and box-128 crops of its micrographs (both at the model's
pixel size, so the networks run at the given box). Each method denoises the same N images in batches; the time
includes normalisation and every network pass of GenEM's default route (or of ``--compare-steps N``: N DDIM
steps + the post-processor, the full sampler), and the per-image normalisation of Topaz.

    python benchmarks/denoise.py --data SIM_DIR [--model DIR] [--n 128] [--threads 1] [--compare-steps 10]
        [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genem.io import GenemDataset  # noqa: E402
from genem.restore.apply import denoise_batch  # noqa: E402
from genem.restore.baselines import load_topaz, topaz_available, topaz_denoise  # noqa: E402
from genem.restore.model import Denoiser  # noqa: E402


def images_for(ds: GenemDataset, box: int, n: int, rng) -> torch.Tensor:
    if box == int(ds.particles()["rlnImageSize"].iloc[0]):
        rows = ds.particles().iloc[:n]
        return torch.from_numpy(ds.read_particle_images(rows))
    mics = ds.micrographs()["rlnMicrographName"].tolist()
    out = []
    while len(out) < n:
        m = ds.read_micrograph(mics[len(out) % len(mics)])
        y, x = rng.integers(0, m.shape[0] - box), rng.integers(0, m.shape[1] - box)
        out.append(m[y:y + box, x:x + box])
    return torch.from_numpy(np.stack(out))


def rate(fn, imgs, batch):
    fn(imgs[:2])  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(imgs), batch):
        fn(imgs[i:i + batch])
    return len(imgs) / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="turns each method takes (its best counts)")
    ap.add_argument("--compare-steps", type=int, default=0, help="also time N DDIM steps + post-processor")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    ds = GenemDataset.open(a.data)
    model = Denoiser.load(a.model)
    px = model.pixel_size_A
    tm = load_topaz() if topaz_available() else None
    rng = np.random.default_rng(0)
    res = {"threads": a.threads, "n_images": a.n, "cpu": platform.processor() or platform.machine(),
           "torch": torch.__version__, "default_steps": model.default_steps,
           "default_postprocess": model.default_postprocess, "batch": a.batch, "results": {}}
    for box in (64, 128):
        imgs = images_for(ds, box, a.n, rng)
        fns = {"genem_default": lambda x: denoise_batch(model, x, px)}
        if a.compare_steps:
            fns[f"genem_ddim{a.compare_steps}_post"] = lambda x: denoise_batch(model, x, px, steps=a.compare_steps,
                                                                               postprocess=True)
        if tm is not None:
            fns["topaz_unet_L2"] = torch.no_grad()(lambda x: topaz_denoise(x, tm))
        # the methods take turns, a.rounds times, and each keeps its best round: on a shared machine, a load that
        # comes and goes then hits every method alike
        r = {k: 0.0 for k in fns}
        for _ in range(a.rounds):
            for k, fn in fns.items():
                r[k] = max(r[k], rate(fn, imgs, a.batch))
        if tm is not None:
            for k in list(r):
                if k.startswith("genem"):
                    r[k + "_over_topaz"] = r[k] / r["topaz_unet_L2"]
        res["results"][f"box{box}"] = {k: round(v, 2) for k, v in r.items()}
        print(f"box {box}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()) + " particles/s", file=sys.stderr)
    if not tm:
        res["topaz"] = "not installed"
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
