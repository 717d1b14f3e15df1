"""A data-consistency step after the denoiser, measured (issue 17; not kept: see docs/denoise.md).

The default route's output D is blended with the particle Y ring by ring with the raw data's Wiener gain,
X = D + W(k) (Y - D), W(k) = max(0, 1 - <|Y - D|^2>_k / <|Y|^2>_k): the residual Y - D estimates the noise, so W
is near 1 where the particle's signal dominates (trust the data) and near 0 where noise does (trust the denoiser).
The ring means are over the whole set (``set``) or each particle alone (``particle``). Scored on the RELION
tutorial beta-gal particles (FRC per band with the aligned, CTF-modulated Class2D average, as
benchmarks/denoise_real.py) and on held-out synthetic sets (PSNR / SSIM / FRC rings 1-8).

    python benchmarks/denoise_consistency.py [--data SET_DIR ...] [--n-real 400]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from genem.ops import radial_average_2d  # noqa: E402
from genem.restore.evaluate import score  # noqa: E402
from genem.restore.model import Denoiser  # noqa: E402
from genem.restore.train import load_training_pairs  # noqa: E402


def blend_with_data(noisy: torch.Tensor, denoised: torch.Tensor, per_particle: bool) -> torch.Tensor:
    """X = D + W(k) (Y - D) with the data's ring-wise Wiener gain W (see the module docstring)."""
    n = noisy.shape[-1]
    Y, D = torch.fft.fft2(noisy.double()), torch.fft.fft2(denoised.double())
    N, P = radial_average_2d((Y - D).abs() ** 2), radial_average_2d(Y.abs() ** 2)
    if not per_particle:
        N, P = N.mean(0, keepdim=True), P.mean(0, keepdim=True)
    W = (1 - N / P.clamp_min(1e-12)).clamp(0, 1)
    k = torch.fft.fftfreq(n) * n
    ring = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2).round().long().clamp(max=W.shape[-1] - 1)
    return torch.fft.ifft2(D + W[:, ring] * (Y - D)).real.float()


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", nargs="*", default=[])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--n-real", type=int, default=400)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = Denoiser.load()

    def den(x):
        return torch.cat([model.denoise_normalized(x[i:i + 64], seeds=range(i, min(i + 64, len(x))))
                          for i in range(0, len(x), 64)])

    from denoise_real import load_betagal, score_real

    raw, ref, mask, px, _ = load_betagal(a.n_real)
    d = den(raw)
    rows = {"raw": raw, "default route": d, "blend (set)": blend_with_data(raw, d, False),
            "blend (particle)": blend_with_data(raw, d, True)}
    for k, v in rows.items():
        r = score_real(v, ref, mask, px)
        print(f"betagal {k:18s} CC {r['cc_mean']:.3f} " + " ".join(f"{b} {f:.3f}" for b, f in r["frc_bands"].items()))
    for s in a.data:
        pr = load_training_pairs([s], a.n, 0)
        d = den(pr.noisy)
        for k, v in {"default route": d, "blend (set)": blend_with_data(pr.noisy, d, False),
                     "blend (particle)": blend_with_data(pr.noisy, d, True)}.items():
            r = score(v, pr.clean, pr.pixel_size_A)
            print(f"{Path(s).name} {k:18s} PSNR {r['psnr_dB']:.2f} SSIM {r['ssim']:.3f} FRC1-8 {r['frc_mean_low']:.3f}")


if __name__ == "__main__":
    main()
