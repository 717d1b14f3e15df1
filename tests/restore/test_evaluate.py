import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genem.restore.baselines import (best_gaussian_lowpass, fourier_amplitude_oracle, gaussian_lowpass,
                                    wiener_filter_oracle)

ROOT = Path(__file__).resolve().parents[2]


def test_gaussian_lowpass_and_oracle_width():
    g = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(32.), torch.arange(32.), indexing="ij")
    clean = torch.exp(-((x - 16) ** 2 + (y - 16) ** 2) / 30.0)[None].repeat(8, 1, 1)
    noisy = clean + 0.5 * torch.randn(8, 32, 32, generator=g)
    assert torch.allclose(gaussian_lowpass(clean, 0), clean)
    assert abs(gaussian_lowpass(noisy, 2.0).mean() - noisy.mean()) < 1e-5  # DC kept
    sigma, f = best_gaussian_lowpass(noisy, clean)
    assert 0.5 < sigma < 6 and ((f - clean) ** 2).mean() < ((noisy - clean) ** 2).mean() / 4


def test_oracle_linear_filters_bound_every_low_pass():
    g = torch.Generator().manual_seed(1)
    y, x = torch.meshgrid(torch.arange(32.), torch.arange(32.), indexing="ij")
    # band-limited, ring-modulated blobs (CTF-like): a low-pass cannot reject the low-frequency noise, Wiener can
    r2 = (x - 16) ** 2 + (y - 16) ** 2
    clean = torch.stack([torch.exp(-r2 / (20.0 + 3 * i)) * torch.cos(0.3 * r2 ** 0.5 * (1 + 0.05 * i))
                         for i in range(64)])
    clean = clean - clean.mean((-2, -1), keepdim=True)
    noisy = clean + 0.4 * torch.randn(64, 32, 32, generator=g)

    def mse(a):
        return float(((a - clean) ** 2).mean())

    w, a = wiener_filter_oracle(noisy, clean), fourier_amplitude_oracle(noisy, clean)
    # the set's Wiener filter has the least total squared error of all shift-invariant linear filters
    assert mse(w) < min(mse(gaussian_lowpass(noisy, s)) for s in (0.5, 1, 1.5, 2, 3, 4, 6)) and mse(w) < mse(noisy)
    assert mse(a) < 0.9 * mse(w)  # knowing each image's amplitudes is worth more
    assert torch.allclose(wiener_filter_oracle(clean, clean), clean, atol=1e-5)  # no noise: identity
    assert float(wiener_filter_oracle(noisy - clean, torch.zeros_like(clean)).abs().max()) < 1e-6  # no signal: 0


def test_evaluate_cli_writes_metrics_and_montage(pair_dataset, tiny_model_dir, tmp_path):
    r = subprocess.run([sys.executable, "-m", "genem", "evaluate", "denoise", "--model", str(tiny_model_dir),
                        "--data", str(pair_dataset), "--out", str(tmp_path / "ev"), "--max-particles", "16",
                        "--no-topaz", "--compare-steps", "6", "--threads", "1"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for k in ("noisy", "gaussian_lowpass_best", "oracle_wiener_set_spectra", "oracle_fourier_amplitudes",
              "diffusion_ddim3", "diffusion_ddim3+post", "diffusion_ddim6"):
        assert k in m["methods"], k
    assert m["methods"]["gaussian_lowpass_best"]["psnr_dB"] > m["methods"]["noisy"]["psnr_dB"]
    assert (m["methods"]["oracle_fourier_amplitudes"]["psnr_dB"] > m["methods"]["oracle_wiener_set_spectra"]["psnr_dB"]
            > m["methods"]["noisy"]["psnr_dB"])
    assert len(m["methods"]["noisy"]["frc_curve"]) == 17
    assert m["snr_whole_box"] == pytest.approx(0.1, rel=0.25)  # the pairs were made at whole-image SNR 0.1
    assert (tmp_path / "ev" / "montage.png").stat().st_size > 1000
