"""``genem evaluate denoise``: restoration quality against ground truth on GenEM dataset folders.

For held-out (noisy, clean) particle pairs, every method is scored with PSNR (dB, per image, range = the clean
image's max - min), SSIM and FRC against the clean twin, all on the RELION-normalised scale of the noisy image:
noisy input, the best Gaussian low-pass (width chosen on the same images: an oracle choice, generous to the
baseline), Topaz-Denoise's general model (if installed), two oracle linear filters as upper references (the
set's exact Wiener filter, and one that knows each image's Fourier amplitudes), the diffusion output alone
(DDIM, default steps), the diffusion output + post-processing U-Net, optionally the mean of several samples and
DDIM at many steps.
Writes ``metrics.json`` and ``montage.png`` (rows: noisy / low-pass / Topaz / denoised / clean).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from genem.io import write_json_atomic
from genem.io.outputs import check_out_dir, claim_out_dir
from genem.metrics import frc, image_snr, psnr, ssim
from genem.progress import ProgressCallback, report

from .baselines import (best_gaussian_lowpass, fourier_amplitude_oracle, load_topaz, topaz_available,
                        topaz_denoise, wiener_filter_oracle)
from .model import FULL_SAMPLER_STEPS, Denoiser
from .train import load_training_pairs


def score(pred: torch.Tensor, clean: torch.Tensor, pixel_size_A: float) -> dict:
    f = frc(pred, clean).mean(0)
    box = clean.shape[-1]
    below = torch.nonzero(f[1:] < 0.143)
    k = int(below[0]) + 1 if len(below) else len(f) - 1
    return {"frc_mean_low": round(float(f[1:box // 8 + 1].mean()), 4),
            "frc_mean_mid": round(float(f[box // 8 + 1:box // 4 + 1].mean()), 4),
            "frc_0.143_resolution_A": round(box * pixel_size_A / max(k, 1), 2),
            "psnr_dB": round(float(psnr(pred, clean).mean()), 3),
            "psnr_sem_dB": round(float(psnr(pred, clean).std() / np.sqrt(len(clean))), 3),
            "ssim": round(float(ssim(pred, clean).mean()), 4),
            "frc_curve": [round(float(v), 4) for v in f]}


def _batched(fn, x, bs=64, progress: ProgressCallback | None = None):
    out = []
    for i in range(0, len(x), bs):
        out.append(fn(x[i:i + bs], i))
        report(progress, "denoise", i + len(out[-1]), len(x), "ptcl")
    return torch.cat(out)


EVALUATE_COMMAND = "genem evaluate denoise"


def evaluate_denoiser(model: Denoiser, data_dirs, out_dir, *, max_particles: int = 256, steps: int | None = None,
                      n_samples_mean: int = 0, compare_steps: int = 0, topaz: bool = True, seed: int = 0,
                      progress: ProgressCallback | None = None, dihedral: bool = False) -> dict:
    own = dict(markers=("metrics.json",))  # an evaluation written before the output mark existed
    out_dir = check_out_dir(out_dir, EVALUATE_COMMAND, **own)
    pairs = load_training_pairs(list(data_dirs), max_particles, seed)
    noisy, clean, px = pairs.noisy, pairs.clean, pairs.pixel_size_A
    if abs(px - model.pixel_size_A) > 1e-3 * px:
        from genem.io import GenemInputError

        raise GenemInputError(data_dirs[0], f"pixel size {px} A differs from the model's {model.pixel_size_A} A")
    # DDIM steps of the sampler rows: the given ones, else the model's default ones, else (a default route without
    # diffusion) the full sampler's
    steps = steps or model.default_steps or FULL_SAMPLER_STEPS
    # the SNR of these particles over the whole box (a simulation's rlnGenemSnr is the SNR inside the particles'
    # masks, higher by about the box-to-particle area ratio)
    res: dict = {"n_particles": int(len(noisy)), "pixel_size_A": px, "box_px": int(noisy.shape[-1]),
                 "snr_whole_box": round(image_snr(noisy, clean), 4), "data": pairs.sources, "steps": steps,
                 "methods": {}, "seconds": {}}
    M = res["methods"]
    imgs = {"noisy": noisy}
    M["noisy"] = score(noisy, clean, px)
    # the trivial estimate (all zeros = the background mean): what a method that removes everything scores
    # (FRC is scale-invariant, so it is undefined for it and left out)
    M["zero"] = {k: v for k, v in score(torch.zeros_like(clean) + 1e-6 * noisy, clean, px).items()
                 if not k.startswith("frc")}
    sigma, lp = best_gaussian_lowpass(noisy, clean)
    M["gaussian_lowpass_best"] = {**score(lp, clean, px), "sigma_px": sigma}
    imgs["low-pass"] = lp
    # upper references, not baselines: linear filters that know the clean images' spectra (see baselines.py)
    M["oracle_wiener_set_spectra"] = score(wiener_filter_oracle(noisy, clean), clean, px)
    M["oracle_fourier_amplitudes"] = score(fourier_amplitude_oracle(noisy, clean), clean, px)
    if topaz and topaz_available():
        tm = load_topaz()
        t0 = time.time()
        tz = _batched(lambda x, i: topaz_denoise(x, tm), noisy)
        res["seconds"]["topaz"] = round(time.time() - t0, 2)
        M["topaz_unet_L2"] = score(tz, clean, px)
        # Topaz's output scale is not calibrated to these images: also report it with the best global gain
        gain = float((tz * clean).sum() / (tz * tz).sum())
        M["topaz_unet_L2_best_gain"] = {**score(tz * gain, clean, px), "gain": round(gain, 4)}
        imgs["Topaz"] = tz * gain
    else:
        res["topaz"] = "not installed (pip install topaz-em==0.3.20 --no-deps; h5py)"

    def run(**kw):
        t0 = time.time()
        out = _batched(lambda x, i: model.denoise_normalized(x, seeds=range(seed + i, seed + i + len(x)), **kw),
                       noisy, progress=progress)
        return out, round(time.time() - t0, 2)

    d, res["seconds"]["diffusion"] = run(steps=steps, postprocess=False)
    M[f"diffusion_ddim{steps}"] = score(d, clean, px)
    imgs["GenEM"] = d
    if model.postprocess is not None:
        p, res["seconds"]["diffusion+post"] = run(steps=steps, postprocess=True)
        M[f"diffusion_ddim{steps}+post"] = score(p, clean, px)
        imgs["GenEM"] = p
    if model.default_steps == 0:  # the default route runs no diffusion pass: the post-processor alone
        g, res["seconds"]["default_route"] = run()
        M["default_route_post_only"] = score(g, clean, px)
        imgs["GenEM"] = g
    if n_samples_mean > 1:
        name = f"diffusion_ddim{steps}_mean{n_samples_mean}" + ("_dihedral" if dihedral else "")
        m, res["seconds"]["mean"] = run(steps=steps, postprocess=False, n_samples=n_samples_mean, dihedral=dihedral)
        M[name] = score(m, clean, px)
        if model.postprocess is not None:
            m2, _ = run(steps=steps, postprocess=True, n_samples=n_samples_mean, dihedral=dihedral)
            M[name + "+post"] = score(m2, clean, px)
    if compare_steps:
        c, res["seconds"][f"ddim{compare_steps}"] = run(steps=compare_steps, postprocess=False)
        M[f"diffusion_ddim{compare_steps}"] = score(c, clean, px)
        M[f"diffusion_ddim{compare_steps}"]["delta_vs_default_steps_dB"] = round(
            M[f"diffusion_ddim{steps}"]["psnr_dB"] - M[f"diffusion_ddim{compare_steps}"]["psnr_dB"], 3)
    imgs["clean"] = clean
    best = max((k for k in M if k.startswith(("diffusion", "default"))), key=lambda k: M[k]["psnr_dB"])
    base = max(M["gaussian_lowpass_best"]["psnr_dB"], M.get("topaz_unet_L2_best_gain", {}).get("psnr_dB", -1e9))
    res["summary"] = {"best_genem": best, "best_genem_psnr_dB": M[best]["psnr_dB"],
                      "gain_over_best_baseline_dB": round(M[best]["psnr_dB"] - base, 3),
                      "best_baseline_psnr_dB": base}
    claim_out_dir(out_dir, EVALUATE_COMMAND, **own)
    write_montage(out_dir / "montage.png", imgs, n=8)
    write_json_atomic(out_dir / "metrics.json", res)
    return res


def write_montage(path, rows: dict, n: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genem.io import atomic_path

    names = list(rows)
    fig, axes = plt.subplots(len(names), n, figsize=(1.3 * n, 1.35 * len(names)))
    for r, name in enumerate(names):
        for c in range(n):
            ax = axes[r, c]
            im = rows[name][c].numpy()
            ref = rows["clean"][c].numpy() if name != "noisy" else im
            lo, hi = np.percentile(ref, [1, 99]) if name not in ("noisy",) else np.percentile(im, [1, 99])
            ax.imshow(im, cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout(pad=0.2)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
