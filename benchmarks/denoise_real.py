"""Denoising real particles without ground truth: RELION tutorial beta-galactosidase (../shared/data).

Metric: agreement with an independent estimate of each particle's signal. RELION's Class2D (job010) assigned
every particle to one of 50 class averages with an in-plane angle and shift; the class average, rotated and shifted
into the particle's frame and multiplied by the particle's CTF, is what the particle would show without noise
(up to within-class variability). We report, per method, the mean Pearson correlation between the (denoised)
particle and this reference inside the particle mask, and its FRC per resolution band. A denoiser that removes
noise raises the correlation; one that removes signal or invents structure lowers it. The reference averages ~50
particles including this one, which favours the raw image slightly (its own noise is in the reference at 1/50),
so the comparison is conservative for the denoisers. Low-pass widths are chosen to maximise the same correlation
(an oracle choice, generous to the baseline). The rotation/shift convention is the one (of four) that
maximises the raw particles' correlation, so it is fixed before any denoiser is seen.

    python benchmarks/denoise_real.py [--model DIR] [--n 400] [--out docs/figures]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genem.io import read_mrc, read_particles_star, read_stack_images  # noqa: E402
from genem.io.star import split_image_name  # noqa: E402
from genem.metrics import frc  # noqa: E402
from genem.physics import CTFParams, compute_ctf_2d  # noqa: E402
from genem.restore.apply import denoise_batch  # noqa: E402
from genem.restore.baselines import gaussian_lowpass, load_topaz, topaz_available, topaz_denoise  # noqa: E402
from genem.restore.model import Denoiser  # noqa: E402
from genem.ops import normalize_background_2d  # noqa: E402

import os  # noqa: E402

_SHARED = [Path(os.environ["GENEM_SHARED_DATA"])] if "GENEM_SHARED_DATA" in os.environ else []
_SHARED += [ROOT.parent / "shared" / "data", ROOT.parents[1] / "shared" / "data"]
DATA = next((d for d in _SHARED if d.is_dir()), _SHARED[0]) / "particles" / "betagal_tutorial"


def transform(refs, psi_deg, shift_px, sign_psi, sign_shift):
    """Rotate (B, N, N) images by sign_psi*psi about N//2 and shift by sign_shift*shift (x, y) px (Fourier)."""
    b, n, _ = refs.shape
    th = torch.deg2rad(sign_psi * psi_deg.float())
    c, s = torch.cos(th), torch.sin(th)
    A = torch.zeros(b, 2, 3)
    A[:, 0, 0], A[:, 0, 1], A[:, 1, 0], A[:, 1, 1] = c, -s, s, c
    grid = F.affine_grid(A, (b, 1, n, n), align_corners=False)
    rot = F.grid_sample(refs[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
    ky = torch.fft.fftfreq(n)[:, None]
    kx = torch.fft.rfftfreq(n)[None, :]
    sh = sign_shift * shift_px
    ph = torch.exp(-2j * math.pi * (kx[None] * sh[:, 0, None, None] + ky[None] * sh[:, 1, None, None]))
    return torch.fft.irfft2(torch.fft.rfft2(rot) * ph, s=(n, n))


def masked_cc(a, b, mask):
    x, y = a[:, mask], b[:, mask]
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    return (x * y).sum(1) / torch.sqrt((x * x).sum(1) * (y * y).sum(1))


def evaluation_indices(n_rows: int, n: int, seed: int = 0) -> np.ndarray:
    """The rows (of Class2D's data STAR) of the ``n`` random evaluation particles."""
    return np.random.default_rng(seed).choice(n_rows, min(n, n_rows), replace=False)


def read_betagal_images(rows) -> torch.Tensor:
    """The particles of STAR ``rows`` (rlnImageName), RELION-normalised (background mean 0, sd 1): (N, 64, 64)."""
    by = {}
    for k, name in enumerate(rows["rlnImageName"]):
        i, p = split_image_name(name)
        by.setdefault(p, []).append((k, i))
    raw = torch.zeros(len(rows), 64, 64)
    for p, items in by.items():
        ims = read_stack_images(DATA / p, [i for _, i in items])
        for (k, _), im in zip(items, ims):
            raw[k] = torch.from_numpy(im)
    return normalize_background_2d(raw)[0]


def load_betagal(n: int, seed: int = 0):
    """``n`` random tutorial particles (RELION-normalised, (n, 64, 64)), each one's reference (its Class2D average
    aligned into its frame, times its CTF), the mask, the pixel size (A) and the rotation/shift convention."""
    optics, rows = read_particles_star(DATA / "Class2D" / "job010" / "run_it025_data.star")
    rows = rows.iloc[evaluation_indices(len(rows), n, seed)]
    px = float(optics["rlnImagePixelSize"].iloc[0])
    raw = read_betagal_images(rows)
    classes, _ = read_mrc(DATA / "Class2D" / "job010" / "run_it025_classes.mrcs")
    classes = torch.from_numpy(classes)
    cls = torch.as_tensor(rows["rlnClassNumber"].to_numpy(int) - 1)
    psi = torch.as_tensor(rows["rlnAnglePsi"].to_numpy(float))
    shift = torch.as_tensor(rows[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(float) / px, dtype=torch.float32)
    ctf = compute_ctf_2d([CTFParams(float(r.rlnDefocusU), float(r.rlnDefocusV), float(r.rlnDefocusAngle),
                                    voltage_kV=float(optics["rlnVoltage"].iloc[0]),
                                    cs_mm=float(optics["rlnSphericalAberration"].iloc[0]),
                                    amplitude_contrast=float(optics["rlnAmplitudeContrast"].iloc[0]))
                          for r in rows.itertuples()], (64, 64), px)
    yy, xx = torch.meshgrid(torch.arange(64) - 32, torch.arange(64) - 32, indexing="ij")
    mask = (yy ** 2 + xx ** 2) <= 30 ** 2
    best = None
    for sp in (1, -1):
        for ss in (1, -1):
            ref = transform(classes[cls], psi, shift, sp, ss)
            ref = torch.fft.irfft2(torch.fft.rfft2(ref) * ctf, s=(64, 64))
            cc = masked_cc(raw, ref, mask).mean().item()
            if best is None or abs(cc) > abs(best[0]):
                best = (cc, sp, ss, ref)
    cc0, sp, ss, ref = best
    print(f"convention psi*{sp} shift*{ss}: raw CC {cc0:.4f}", file=sys.stderr)
    return raw, ref * np.sign(cc0), mask, px, {"psi_sign": sp, "shift_sign": ss}


# FRC rings [lo, hi) in cycles per 64-px box: at 3.54 A/px 227-113, 113-57, 57-38, 38-28, 28-23, 23-19, 19-15,
# 15-9 and 9-7 A (two-ring bands from 113 to 15 A, where the denoisers differ)
BANDS = [(1, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 15), (15, 24), (24, 32)]


def score_real(im, ref, mask, px) -> dict:
    """Masked CC with the reference (mean, s.e.m.) and the FRC with it per resolution band."""
    cc = masked_cc(im, ref, mask)
    f = frc(im, ref).mean(0)
    return {"cc_mean": round(cc.mean().item(), 4), "cc_sem": round((cc.std() / math.sqrt(len(cc))).item(), 4),
            "frc_bands": {f"{64 * px / hi:.0f}-{64 * px / lo:.0f}A": round(f[lo:hi].mean().item(), 4)
                          for lo, hi in BANDS}}


def best_lowpass_real(raw, ref, mask):
    """The Gaussian low-pass width (px) with the highest masked CC (an oracle choice) and its images."""
    s = max((masked_cc(gaussian_lowpass(raw, s), ref, mask).mean().item(), s) for s in
            (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0))[1]
    return s, gaussian_lowpass(raw, s)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "docs" / "figures"))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    raw, ref, mask, px, conv = load_betagal(a.n)
    methods = {"raw": raw}
    sigma, lp = best_lowpass_real(raw, ref, mask)
    methods[f"low-pass (sigma {sigma} px)"] = lp
    timing = {}
    if topaz_available():
        tm = load_topaz()
        t0 = time.time()
        methods["Topaz-Denoise (unet)"] = torch.cat([topaz_denoise(raw[i:i + 64], tm) for i in range(0, len(raw), 64)])
        timing["topaz_s"] = time.time() - t0
    model = Denoiser.load(a.model)
    t0 = time.time()
    methods["GenEM diffusion"] = torch.cat([denoise_batch(model, raw[i:i + 64], px, steps=a.steps, postprocess=False,
                                                          seeds=range(i, min(i + 64, len(raw)))) for i in range(0, len(raw), 64)])
    methods["GenEM diffusion+post"] = torch.cat([denoise_batch(model, raw[i:i + 64], px, steps=a.steps,
                                                               seeds=range(i, min(i + 64, len(raw)))) for i in range(0, len(raw), 64)])
    timing["genem_s"] = time.time() - t0
    res = {"n_particles": len(raw), "pixel_size_A": px, "convention": conv,
           "metric": "mean Pearson CC (mask radius 30 px) with the CTF-modulated, aligned Class2D average",
           "methods": {name: score_real(im, ref, mask, px) for name, im in methods.items()}}
    res["timing"] = timing
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "denoise_real_betagal.json").write_text(json.dumps(res, indent=1) + "\n")
    _montage(out / "denoise_real_betagal.png", {**methods, "reference (class avg x CTF)": ref}, n=8)
    print(json.dumps({k: v["cc_mean"] for k, v in res["methods"].items()}, indent=1))


def _montage(path, rows, n):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.4 * len(rows)))
    for r, (name, ims) in enumerate(rows.items()):
        for c in range(n):
            im = ims[c].numpy()
            lo, hi = np.percentile(im, [1, 99])
            axes[r, c].imshow(im, cmap="gray", vmin=lo, vmax=hi)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=7)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
