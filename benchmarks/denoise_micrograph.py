"""Whole-micrograph denoising: seconds, Mpx/s and peak extra memory of GenEM's tiled micrograph path (what
``genem denoise apply --micrographs`` runs) against Topaz-Denoise's general model on the same 4096^2 micrograph,
in the same run, on CPU.

Each method runs in its own fresh process; "extra memory" is that process's peak resident set (VmHWM) minus its
resident set once the model and the micrograph are loaded (so it is what denoising adds). Methods:
- ``genem_native``: the micrograph at its own pixel size (the EPU example: 0.667 A/px), resampled to the model's
  3.54 A/px, denoised tile by tile and resampled back (the real use);
- ``genem_model_px``: the central ``--size`` pixels (default: all) taken to be at the model's pixel size, so the
  network runs on every pixel (the like-for-like throughput against Topaz, which always runs at the input's
  pixels);
- ``topaz_whole``: Topaz's network on the same ``--size`` crop at once (``topaz denoise --patch-size -1``; its
  fastest route; its memory grows with the pixel count);
- ``topaz_patches`` (``--topaz-patches``): ``topaz denoise``'s default 1024-px patches with 500 px padding.

    python benchmarks/denoise_micrograph.py [--micrograph MRC] [--size 2048] [--threads 1] [--model DIR]
        [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_MIC = ROOT.parent / "shared" / "data" / "micrographs" / "epu2.9_example.mrc"


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _run(method: str, mic: str, model_dir, threads: int, size: int, q) -> None:
    import numpy as np
    import torch

    from genem.io import read_mrc

    torch.set_num_threads(threads)
    img, px = read_mrc(mic)
    img = torch.from_numpy(np.array(img, dtype=np.float32))
    if method != "genem_native" and size:
        y0, x0 = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        img = img[max(y0, 0):max(y0, 0) + size, max(x0, 0):max(x0, 0) + size].contiguous()
    if method.startswith("genem"):
        from genem.restore.apply import denoise_micrograph
        from genem.restore.model import Denoiser

        model = Denoiser.load(model_dir)
        px = px if method == "genem_native" else model.pixel_size_A
        fn = lambda: denoise_micrograph(model, img, px, invert_contrast=True)  # noqa: E731
    else:
        from topaz.denoise import Denoise

        from genem.restore.baselines import load_topaz

        den = Denoise.__new__(Denoise)  # its constructor refuses a model subclass; set what denoise() uses
        den.model, den.device, den.dims, den.use_cuda = load_topaz(), torch.device("cpu"), 2, False
        patch = (1024, 500) if method == "topaz_patches" else (-1, 0)
        fn = lambda: den.denoise(img, patch_size=patch[0], padding=patch[1])  # noqa: E731
    base = _rss_kib("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    sec = time.perf_counter() - t0
    peak = _rss_kib("VmHWM")
    q.put({"pixels": list(img.shape), "seconds": round(sec, 2), "mpx_per_s": round(img.numel() / 1e6 / sec, 4),
           "extra_memory_GiB": round((peak - base) / 2 ** 20, 3), "finite": bool(np.isfinite(np.asarray(out)).all())})


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--micrograph", default=str(DEFAULT_MIC))
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=0, help="central crop (px) for the like-for-like methods (0: all)")
    ap.add_argument("--topaz-patches", action="store_true", help="also topaz denoise's default patched route (slow)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    methods = ["genem_native", "genem_model_px", "topaz_whole"] + (["topaz_patches"] if a.topaz_patches else [])
    ctx = mp.get_context("spawn")
    res = {"micrograph": a.micrograph, "threads": a.threads, "methods": {}}
    for m in methods:
        q = ctx.Queue()
        p = ctx.Process(target=_run, args=(m, a.micrograph, a.model, a.threads, a.size, q))
        p.start()
        while p.is_alive() and q.empty():
            time.sleep(0.5)
        if q.empty():
            raise SystemExit(f"{m} failed (exit status {p.exitcode})")
        r = q.get()
        p.join()
        res["methods"][m] = r
        print(m, r, file=sys.stderr)
    t = res["methods"]["topaz_whole"]["mpx_per_s"]
    res["genem_model_px_over_topaz_whole_speed"] = round(res["methods"]["genem_model_px"]["mpx_per_s"] / t, 3)
    res["genem_native_over_topaz_whole_speed"] = round(res["methods"]["genem_native"]["mpx_per_s"] / t, 3)
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
