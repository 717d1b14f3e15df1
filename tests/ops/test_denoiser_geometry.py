"""RELION normalisation and Fourier resampling as the denoiser uses them (genem.ops)."""
import pytest
import torch

from genem.ops import background_stats_2d, normalize_background_2d, pad_to_multiple_2d, resample_fourier_2d


def test_relion_normalisation_and_resampling():
    g = torch.Generator().manual_seed(0)
    img = 5 + 3 * torch.randn(4, 64, 64, generator=g)
    n, mean, sd = normalize_background_2d(img)
    m2, s2 = background_stats_2d(n)
    assert torch.allclose(m2, torch.zeros_like(m2), atol=1e-5) and torch.allclose(s2, torch.ones_like(s2), atol=1e-5)
    assert torch.allclose(n * sd + mean, img, atol=1e-4)
    # a band-limited image survives down- and up-sampling
    y, x = torch.meshgrid(torch.arange(64.), torch.arange(64.), indexing="ij")
    smooth = torch.exp(-((x - 32) ** 2 + (y - 32) ** 2) / (2 * 6.0 ** 2))
    back = resample_fourier_2d(resample_fourier_2d(smooth, 40), 64)
    assert torch.allclose(back, smooth, atol=1e-3)
    small = resample_fourier_2d(smooth, 32)
    assert small[16, 16] == pytest.approx(1.0, abs=0.02) and small.argmax() == 16 * 32 + 16
    p, hw = pad_to_multiple_2d(torch.randn(3, 30, 31), 8)
    assert p.shape == (3, 32, 32) and hw == (30, 31)
