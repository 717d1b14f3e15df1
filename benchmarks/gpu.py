"""Throughput of every GenEM stage on one device, in one run (issue 19's GPU numbers).

    python benchmarks/gpu.py --device cuda [--json out.json]
    python benchmarks/gpu.py --device cpu --quick          # small sizes: proves the script runs

Printed, each on ``--device``:

1. simulation: particles/s of ``simulate_particle_stack`` at box 128 (1.5 A/px, the built-in structure), with a
   random CTF per particle and white Gaussian noise (the projector on the device; the stack is returned as numpy);
2. translation: training steps/s of one CUT step (``train_step``, the default config: 128 px tiles, batch 4, and a
   larger batch that fills a GPU), and seconds per 4096^2 micrograph of ``translate_micrograph`` (the default
   generator, 1024 px tiles);
3. denoising: particles/s of the shipped denoiser (its default DDIM steps and post-processing) at box 64 and 128,
   against Topaz-Denoise's pretrained model on the same device and images (the ratio is the issue's >= 5x target);
4. picking: micrographs/s of ``pick_image`` on 4096^2 micrographs (150 A particles at 1 A/px; the picker at 16 px
   per diameter, default width).

On CUDA the denoiser and the translator are also timed under ``torch.autocast(bfloat16)``, with the PSNR of the
bf16 output against the float32 one (quality holds when that is far above the data's own SNR; GenEM keeps float32
until this has been measured). Networks are untrained where speed does not depend on weights (translator, picker).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn, device, repeats: int = 1) -> float:
    """Seconds per call of ``fn`` (after one warm-up call), synchronising a CUDA device."""
    fn()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t) / repeats


def autocast(device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def psnr_dB(ref: torch.Tensor, x: torch.Tensor) -> float:
    ref, x = ref.float().cpu(), x.float().cpu()
    return float(10 * torch.log10(ref.var() / (x - ref).square().mean().clamp_min(1e-20)))


def bench_simulation(device, n: int, batch: int) -> dict:
    from genem.physics.ctf import CTFParams
    from genem.physics.projection import FourierProjector
    from genem.physics.rotations import sample_uniform_euler_relion
    from genem.simulate.config import DEFAULT_STRUCTURE
    from genem.simulate.stacks import crop_volume_to_support, simulate_particle_stack
    from genem.simulate.structures import load_potential

    pot = load_potential(DEFAULT_STRUCTURE, 1.5).volume_V
    proj = FourierProjector(crop_volume_to_support(pot), 1.5, device=device)
    rng = np.random.default_rng(0)
    eul = sample_uniform_euler_relion(rng, n)
    du = rng.uniform(8000, 25000, n)
    ctfs = [CTFParams(u, u - d, a) for u, d, a in zip(du, rng.uniform(0, 400, n), rng.uniform(0, 180, n))]
    with torch.inference_mode():
        dt = timed(lambda: simulate_particle_stack(proj, eul, ctfs, box_px=128, noise_mode="gaussian", noise_sd=1.0,
                                                   rng=np.random.default_rng(1), batch=batch), device)
    return {"particles": n, "batch": batch, "particles_per_s": n / dt}


def bench_translate(device, steps: int, batches, micrograph_px: int) -> dict:
    from genem.translate.apply import translate_micrograph
    from genem.translate.train import TranslateTrainConfig, TranslatorState, train_step

    out = {}
    for b in batches:
        cfg = TranslateTrainConfig(batch_size=b)
        state = TranslatorState(cfg, device)
        g = torch.Generator().manual_seed(0)
        t = cfg.tile_px
        x, y = torch.randn(b, 1, t, t, device=device), torch.randn(b, 1, t, t, device=device)
        m = torch.rand(b, t, t, device=device) > 0.8
        dt = timed(lambda: train_step(state, cfg, x, m, y, g), device, steps)
        out[f"train_steps_per_s_batch{b}"] = 1.0 / dt
    gen = state.G_out.eval()
    image = np.random.default_rng(0).normal(size=(micrograph_px, micrograph_px)).astype(np.float32)
    results = {}
    for bf16 in (False, True) if device.type == "cuda" else (False,):
        with torch.no_grad(), autocast(device, bf16):
            results[bf16] = translate_micrograph(gen, image, device=device)
            dt = timed(lambda: translate_micrograph(gen, image, device=device), device)
        out[f"apply_s_per_{micrograph_px}px_micrograph" + ("_bf16" if bf16 else "")] = dt
    if True in results:
        out["apply_bf16_psnr_vs_fp32_dB"] = psnr_dB(torch.from_numpy(results[False]), torch.from_numpy(results[True]))
    return out


def bench_denoise(device, boxes, n: int, batch: int) -> dict:
    from genem.restore import Denoiser
    from genem.restore.baselines import load_topaz, topaz_available, topaz_denoise

    model = Denoiser.load(None, device=str(device))
    topaz = load_topaz().to(device) if topaz_available() else None
    out = {"steps": model.default_steps, "batch": batch}
    for box in boxes:
        noisy = torch.randn(n, box, box, generator=torch.Generator().manual_seed(box))

        def run(fn):
            return torch.cat([fn(noisy[i:i + batch].to(device, non_blocking=True)).cpu() for i in range(0, n, batch)])

        ref = {}
        for bf16 in (False, True) if device.type == "cuda" else (False,):
            with autocast(device, bf16):
                ref[bf16] = run(model.denoise_normalized)
                dt = timed(lambda: run(model.denoise_normalized), device)
            out[f"genem_box{box}_particles_per_s" + ("_bf16" if bf16 else "")] = n / dt
        if True in ref:
            out[f"genem_box{box}_bf16_psnr_vs_fp32_dB"] = psnr_dB(ref[False], ref[True])
        if topaz is not None:
            dt = timed(lambda: run(lambda x: topaz_denoise(x, topaz)), device)
            out[f"topaz_box{box}_particles_per_s"] = n / dt
            out[f"ratio_box{box}_genem_over_topaz"] = out[f"genem_box{box}_particles_per_s"] / (n / dt)
    return out


def bench_pick(device, micrograph_px: int, n: int) -> dict:
    from genem.pick import Picker, PickerMeta, pick_image

    torch.manual_seed(0)
    picker = Picker(PickerMeta(150.0 / 16, 150.0), device=str(device))
    images = [np.random.default_rng(i).normal(size=(micrograph_px, micrograph_px)).astype(np.float32)
              for i in range(n)]
    dt = timed(lambda: [pick_image(picker, im, 1.0) for im in images], device)
    return {"micrographs_per_s": n / dt, "micrograph_px": micrograph_px}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="small sizes (a check that everything runs)")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("CUDA is not available here; use --device cpu --quick to check the script")
    gpu = device.type == "cuda"
    q = args.quick
    name = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    res = {"device": name, "quick": q, "torch": torch.__version__}
    stages = (("simulation", lambda: bench_simulation(device, 256 if q else 20000, 4096 if gpu else 256)),
              ("translate", lambda: bench_translate(device, 1 if q else 20, (4,) if q else (4, 32),
                                                    1024 if q else 4096)),
              ("denoise", lambda: bench_denoise(device, (64, 128), 16 if q else 4096, 1024 if gpu else 64)),
              ("pick", lambda: bench_pick(device, 1024 if q else 4096, 2 if q else 8)))
    print(f"GenEM throughput on {name} (torch {torch.__version__}){' [quick sizes]' if q else ''}")
    for stage, fn in stages:
        t = time.perf_counter()
        res[stage] = fn()
        print(f"{stage} ({time.perf_counter() - t:.0f} s): " +
              ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in res[stage].items()),
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
