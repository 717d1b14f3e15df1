"""How many network evaluations the denoiser needs: quality of its routes (DDIM with N steps, with and without the
post-processing U-Net; the post-processor alone) on held-out synthetic sets and on real particles, beside the
baselines, all in one run.

Synthetic sets (GenEM dataset folders with clean twins, e.g. the held-out ribosome sets that
``benchmarks/denoise_snr_sweep.py`` simulates): PSNR / SSIM / low-resolution FRC against the clean twins, as
``genem evaluate denoise`` scores them. Real particles (``--real``): the RELION tutorial beta-galactosidase metric
of ``benchmarks/denoise_real.py`` (FRC per band with each particle's aligned, CTF-modulated Class2D average).
A route "ddimN" is N DDIM steps (N network passes; "ddim1" is the network's one-step prediction of the clean
image from pure noise); "+post" adds the post-processing U-Net (one pass); "post-only" runs the post-processor
on (noisy, zeros).

    python benchmarks/denoise_routes.py [--data SET_DIR ...] [--real] [--steps 10,3,2,1] [--n 256] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from genem.restore.baselines import best_gaussian_lowpass, load_topaz, topaz_available, topaz_denoise  # noqa: E402
from genem.restore.evaluate import score  # noqa: E402
from genem.restore.model import Denoiser  # noqa: E402
from genem.restore.train import load_training_pairs  # noqa: E402


def route_outputs(model: Denoiser, noisy: torch.Tensor, steps_list, batch: int = 64) -> tuple[dict, dict]:
    """{route: (B, H, W) images} and {route: seconds} for every route; per-particle seeds as in evaluation."""
    outs, secs = {}, {}

    def add(name, fn):
        t0 = time.perf_counter()
        outs[name] = torch.cat([fn(noisy[i:i + batch], i) for i in range(0, len(noisy), batch)])
        secs[name] = round(time.perf_counter() - t0, 2)

    post = model.postprocess
    for s in steps_list:
        add(f"ddim{s}", lambda x, i: model.denoise_normalized(x, steps=s, postprocess=False,
                                                              seeds=range(i, i + len(x))))
        if post is not None:
            d = outs[f"ddim{s}"] * model.target_scale  # back to the networks' units
            with torch.inference_mode():
                add(f"ddim{s}+post", lambda x, i: post(x[:, None], d[i:i + len(x), None])[:, 0] / model.target_scale)
            secs[f"ddim{s}+post"] += secs[f"ddim{s}"]
    if post is not None:
        with torch.inference_mode():
            add("post-only", lambda x, i: post(x[:, None], torch.zeros_like(x[:, None]))[:, 0] / model.target_scale)
    return outs, secs


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", nargs="*", default=[])
    ap.add_argument("--real", action="store_true", help="also the beta-gal tutorial particles")
    ap.add_argument("--model", default=None)
    ap.add_argument("--steps", default="10,3,2,1")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--n-real", type=int, default=400)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = Denoiser.load(a.model)
    steps_list = [int(s) for s in a.steps.split(",")]
    tm = load_topaz() if topaz_available() else None
    res = {"model": model.source, "sets": {}}
    for d in a.data:
        pairs = load_training_pairs([d], a.n, 0)
        noisy, clean, px = pairs.noisy, pairs.clean, pairs.pixel_size_A
        rows = {}
        sigma, lp = best_gaussian_lowpass(noisy, clean)
        rows[f"low-pass (sigma {sigma})"] = score(lp, clean, px)
        if tm is not None:
            tz = torch.cat([topaz_denoise(noisy[i:i + 64], tm) for i in range(0, len(noisy), 64)])
            gain = float((tz * clean).sum() / (tz * tz).sum())
            rows["topaz (best gain)"] = score(tz * gain, clean, px)
        outs, secs = route_outputs(model, noisy, steps_list)
        for k, v in outs.items():
            rows[k] = {**score(v, clean, px), "seconds": secs[k]}
        res["sets"][Path(d).name] = rows
        _print_set(Path(d).name, rows)
    if a.real:
        from denoise_real import best_lowpass_real, load_betagal, score_real

        raw, ref, mask, px, _ = load_betagal(a.n_real)
        if abs(px - model.pixel_size_A) > 1e-3:  # the routes run at the model's pixel size, without resampling
            raise SystemExit("the tutorial particles are not at the model's pixel size")
        sigma, lp = best_lowpass_real(raw, ref, mask)
        rows = {"raw": score_real(raw, ref, mask, px), f"low-pass (sigma {sigma})": score_real(lp, ref, mask, px)}
        if tm is not None:
            rows["topaz"] = score_real(torch.cat([topaz_denoise(raw[i:i + 64], tm) for i in range(0, len(raw), 64)]),
                                       ref, mask, px)
        outs, secs = route_outputs(model, raw, steps_list)  # raw is RELION-normalised already
        for k, v in outs.items():
            rows[k] = {**score_real(v, ref, mask, px), "seconds": secs[k]}
        res["betagal"] = rows
        for k, v in rows.items():
            print(f"betagal {k:22s} CC {v['cc_mean']:.3f} " + " ".join(f"{b} {f:.3f}" for b, f in
                                                                       v["frc_bands"].items()), file=sys.stderr)
    text = json.dumps(res, indent=1)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
    else:
        print(text)


def _print_set(name, rows):
    for k, v in rows.items():
        print(f"{name} {k:22s} PSNR {v['psnr_dB']:.2f} SSIM {v['ssim']:.3f} FRC1-8 {v['frc_mean_low']:.3f}"
              + (f"  {v['seconds']} s" if "seconds" in v else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
