"""genem.metrics: image and Fourier metrics against known values."""
import numpy as np
import pytest
import torch

from genem.metrics import frc, image_snr, psnr, ssim
from genem.ops import radial_average_2d, radial_power_spectrum_2d


def test_psnr_and_ssim_known_values():
    t = torch.zeros(1, 16, 16)
    t[0, 0, 0] = 1.0  # range 1
    p = t + 0.1
    assert psnr(p, t).item() == pytest.approx(20.0, abs=1e-6)  # MSE 0.01
    g = torch.Generator().manual_seed(0)
    img = torch.randn(4, 32, 32, generator=g)
    assert torch.allclose(ssim(img, img), torch.ones(4, dtype=torch.float64))
    s1 = ssim(img + 0.1 * torch.randn(4, 32, 32, generator=g), img)
    s2 = ssim(img + 1.0 * torch.randn(4, 32, 32, generator=g), img)
    assert torch.all(s1 > s2) and torch.all(s2 < 0.8)


def test_image_snr_is_signal_over_noise_variance_over_the_whole_image():
    g = torch.Generator().manual_seed(0)
    clean = 0.3 * torch.randn(50, 32, 32, generator=g) + 5.0  # per-image offsets do not count as signal
    noisy = clean + 2.0 * torch.randn(50, 32, 32, generator=g) - 1.0
    assert image_snr(noisy, clean) == pytest.approx(0.09 / 4.0, rel=0.03)
    assert image_snr(clean, clean) > 1e20


def test_frc_and_radial_average():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 64, 64, generator=g)
    assert torch.allclose(frc(a, a), torch.ones(8, 33, dtype=torch.float64))
    b = torch.randn(8, 64, 64, generator=g)
    f = frc(a, b)[:, 10:]
    assert f.abs().mean() < 0.1 and abs(f.mean()) < 0.02
    # white noise of variance 4: flat power spectrum at 4
    ps = radial_power_spectrum_2d(2 * torch.randn(64, 64, 64, generator=g)).mean(0)
    assert torch.allclose(ps[8:], torch.full_like(ps[8:], 4.0), rtol=0.1)
    assert ps[8:].mean().item() == pytest.approx(4.0, rel=0.02)
    # a radial function is returned as its profile
    y, x = np.mgrid[:32, :32] - 16
    r = np.sqrt(x ** 2 + y ** 2)
    prof = radial_average_2d(torch.tensor(r), centered=True)
    assert np.allclose(prof.numpy()[1:15], np.arange(1, 15), atol=0.25)
