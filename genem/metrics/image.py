"""PSNR and SSIM between images with leading batch dimensions (..., H, W); one value per image."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _range(target: torch.Tensor, data_range):
    if data_range is None:
        flat = target.flatten(-2)
        return flat.amax(-1) - flat.amin(-1)
    return torch.as_tensor(data_range, dtype=target.dtype, device=target.device)


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range=None) -> torch.Tensor:
    """10 log10(range^2 / MSE) per image; ``range`` defaults to each target's max - min."""
    pred, target = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(target, dtype=torch.float64)
    mse = ((pred - target) ** 2).flatten(-2).mean(-1)
    r = _range(target, data_range)
    return 10 * torch.log10(r ** 2 / mse.clamp_min(1e-30))


def image_snr(noisy: torch.Tensor, clean: torch.Tensor) -> float:
    """Signal-to-noise ratio of a stack over the whole image: variance of the clean images (each about its own
    mean) over the variance of ``noisy - clean``, pooled over the stack (the convention of cryoDRGN's
    ``add_noise`` without a mask, and of the denoising papers that simulate particles at a given SNR)."""
    noisy, clean = torch.as_tensor(noisy, dtype=torch.float64), torch.as_tensor(clean, dtype=torch.float64)
    signal = clean - clean.mean((-2, -1), keepdim=True)
    noise = noisy - clean
    noise = noise - noise.mean((-2, -1), keepdim=True)
    return float((signal ** 2).mean() / (noise ** 2).mean().clamp_min(1e-30))


def _gaussian_window(size: int, sigma: float, dtype, device):
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range=None, *, window: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004, eq. 13) with an 11x11 Gaussian window (sigma 1.5), valid region
    only, averaged per image; constants C1 = (k1 L)^2, C2 = (k2 L)^2 with L = ``data_range`` (default per target)."""
    pred, target = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(target, dtype=torch.float64)
    lead = target.shape[:-2]
    h, w = target.shape[-2:]
    x = pred.reshape(-1, 1, h, w)
    y = target.reshape(-1, 1, h, w)
    L = _range(target, data_range).reshape(-1)
    if L.numel() == 1:
        L = L.expand(x.shape[0])
    L = L[:, None, None, None]
    win = _gaussian_window(window, sigma, x.dtype, x.device)
    mx, my = F.conv2d(x, win), F.conv2d(y, win)
    sxx = F.conv2d(x * x, win) - mx * mx
    syy = F.conv2d(y * y, win) - my * my
    sxy = F.conv2d(x * y, win) - mx * my
    c1, c2 = (k1 * L) ** 2, (k2 * L) ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1).reshape(lead)
