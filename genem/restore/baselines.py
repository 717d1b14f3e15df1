"""Baselines a denoiser is judged against: Gaussian low-pass (with the best width) and Topaz-Denoise; and two
oracle linear filters that use the clean images, as upper references no real method can run (what a linear
filter could at best do on a set, to put a target in dB into perspective).

Topaz-Denoise (Bepler et al. 2020, pip ``topaz-em``) is optional: :func:`topaz_available` says whether its
pretrained general model can be loaded here (it needs ``h5py``; its ``topaz`` entry point, which imports
torchvision, is not used).
"""
from __future__ import annotations

import math

import torch

from genem.ops import normalize_image_2d


def gaussian_lowpass(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Gaussian low-pass of (..., H, W) with real-space width ``sigma_px`` (applied in Fourier space, periodic)."""
    x = torch.as_tensor(images, dtype=torch.float32)
    if sigma_px <= 0:
        return x.clone()
    h, w = x.shape[-2:]
    ky = torch.fft.fftfreq(h)[:, None]
    kx = torch.fft.rfftfreq(w)[None, :]
    filt = torch.exp(-2 * (math.pi * sigma_px) ** 2 * (kx ** 2 + ky ** 2))
    return torch.fft.irfft2(torch.fft.rfft2(x) * filt, s=(h, w))


def best_gaussian_lowpass(noisy: torch.Tensor, clean: torch.Tensor, sigmas=None):
    """The low-pass width (px) with the highest mean PSNR against ``clean`` (an oracle choice, generous to the
    baseline); returns (sigma_px, filtered images)."""
    from genem.metrics import psnr

    sigmas = sigmas if sigmas is not None else [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0]
    best = None
    for s in sigmas:
        f = gaussian_lowpass(noisy, s)
        p = float(psnr(f, clean).mean())
        if best is None or p > best[0]:
            best = (p, s, f)
    return best[1], best[2]


def _wiener(noisy, clean, per_image: bool) -> torch.Tensor:
    """Y * S / (S + N): N the set's mean noise power spectrum (from noisy - clean), S the clean images' power
    spectrum, each image's own (``per_image``) or the set's mean."""
    Y = torch.fft.fft2(torch.as_tensor(noisy, dtype=torch.float64))
    X = torch.fft.fft2(torch.as_tensor(clean, dtype=torch.float64))
    n = ((Y - X).abs() ** 2).flatten(0, -3).mean(0)
    s = X.abs() ** 2 if per_image else (X.abs() ** 2).flatten(0, -3).mean(0)
    return torch.fft.ifft2(Y * (s / (s + n).clamp_min(1e-30))).real.to(torch.float32)


def wiener_filter_oracle(noisy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The best shift-invariant linear filter for this set (least total squared error): one 2D Fourier filter
    W(k) = S(k) / (S(k) + N(k)), with S and N the set's mean signal and noise power spectra taken from the
    clean images and from noisy - clean (Wiener 1949). An oracle: it knows both spectra exactly."""
    return _wiener(noisy, clean, per_image=False)


def fourier_amplitude_oracle(noisy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """A per-image linear filter that knows each image's exact Fourier amplitudes: W_i(k) = |X_i(k)|^2 /
    (|X_i(k)|^2 + N(k)), N the set's mean noise power (the MMSE gain per coefficient when only the noise's
    phase is unknown). Far more than any denoiser knows; a method beyond it must use priors on phases, i.e. on
    the structure."""
    return _wiener(noisy, clean, per_image=True)


def topaz_available() -> bool:
    try:
        import topaz.denoise  # noqa: F401
    except Exception:
        return False
    return True


def load_topaz(name: str = "unet_L2_v0.2.2"):
    """Topaz-Denoise's pretrained general 2D model (``topaz denoise --model unet`` = unet_L2_v0.2.2, trained on
    many EMPIAR data sets). The weights are read from the installed wheel directly (topaz's own loader needs
    ``pkg_resources``, absent from setuptools >= 81)."""
    from pathlib import Path

    import topaz
    from topaz.denoising.models import UDenoiseNet

    arch = {"unet_L2_v0.2.2": dict(base_width=11, top_width=5), "unet_L2_v0.2.1": dict(base_width=7, top_width=3)}
    model = UDenoiseNet(**arch[name])
    path = Path(topaz.__file__).parent / "pretrained" / "denoise" / f"{name}.sav"
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict):
        state = state.state_dict()
    model.load_state_dict(state)
    model.eval()
    return model


@torch.no_grad()
def topaz_denoise(images: torch.Tensor, model=None) -> torch.Tensor:
    """Denoise (B, H, W) images one by one with Topaz's model, as ``topaz denoise`` does for a micrograph
    (normalise by the image's mean/sd, run the network, restore the scale)."""
    model = model or load_topaz()
    z, mu, sd = normalize_image_2d(torch.as_tensor(images, dtype=torch.float32))
    return (model(z[:, None])[:, 0] * sd + mu).float()
