"""Vitreous ice: thickness maps (random, or estimated from a real micrograph the Icebreaker way) and their effect.

Thickness t (nm) attenuates the zero-loss beam by Beer-Lambert, T = exp(-t / mfp) (energy-filtered imaging, mfp the
inelastic mean free path, ~320-350 nm at 300 kV), and adds a weak-phase background: amorphous ice scatters like a
random potential whose projected variance grows with thickness (modelled as a smooth Gaussian random phase field of
standard deviation ``phase_sd_rad_per_sqrt_nm * sqrt(t)``).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.cluster.vq import kmeans2


def gaussian_random_field_2d(rng: np.random.Generator, shape, correlation_px: float) -> np.ndarray:
    """Zero-mean, unit-variance smooth random field with a Gaussian correlation length (pixels).

    White noise filtered by exp(-2 pi^2 c^2 k^2) (c = ``correlation_px``, k in cycles per pixel). For c >= 32 px the
    field is drawn on a grid f = c // 16 times coarser (16 samples per correlation length; the filter leaves nothing
    beyond its Nyquist frequency) and interpolated bicubically: the same statistics (interpolation error ~1e-4 of
    the field's sd) for a fraction of the work.
    """
    h, w = int(shape[0]), int(shape[1])
    if correlation_px <= 0:
        return rng.standard_normal((h, w)).astype(np.float32)
    import torch  # float32 FFTs: several times faster than numpy's float64 ones on micrograph-sized fields

    f = int(correlation_px // 16) if correlation_px >= 32 else 1
    hc, wc = -(-h // f), -(-w // f)
    white = torch.from_numpy(rng.standard_normal((hc, wc)).astype(np.float32))
    spec = torch.fft.rfft2(white)
    ky = torch.fft.fftfreq(hc, d=f, dtype=torch.float64)[:, None]  # cycles per (fine) pixel
    kx = torch.fft.rfftfreq(wc, d=f, dtype=torch.float64)[None, :]
    spec *= torch.exp(-2 * (np.pi * correlation_px) ** 2 * (kx ** 2 + ky ** 2)).to(torch.float32)
    g = torch.fft.irfft2(spec, s=(hc, wc))
    if f > 1:
        import torch.nn.functional as F

        g = torch.cat([g, g[:1]], 0)
        g = torch.cat([g, g[:, :1]], 1)  # periodic: the sample after the last is the first
        g = F.interpolate(g[None, None], size=(hc * f + 1, wc * f + 1), mode="bicubic", align_corners=True)[0, 0]
        g = g[:h, :w]
    g = g - g.mean()
    sd = float(g.std())
    return (g / sd if sd > 0 else g).contiguous().numpy()


def random_ice_thickness_nm(rng, shape, mean_nm: float, sd_nm: float, correlation_px: float) -> np.ndarray:
    """A smooth random thickness map (nm), clipped at zero."""
    t = mean_nm + sd_nm * gaussian_random_field_2d(rng, shape, correlation_px)
    return np.clip(t, 0.0, None).astype(np.float32)


def transmission_from_thickness(thickness_nm, mfp_nm: float):
    """Zero-loss transmission exp(-t / mfp)."""
    return np.exp(-np.asarray(thickness_nm) / mfp_nm)


def estimate_ice_thickness_icebreaker(micrograph, *, mean_thickness_nm: float, mfp_nm: float = 350.0,
                                      lowpass_px: float = 20.0, patch_px: int = 32, n_groups: int = 16,
                                      smooth_px: float = 8.0, seed: int = 0) -> np.ndarray:
    """Relative ice thickness of a real micrograph, after Icebreaker (Olek et al. 2022).

    Low-pass the image, average it in patches, group the patch means by k-means into ``n_groups`` intensity levels,
    give each pixel its group's level, smooth, and turn intensity into thickness by Beer-Lambert relative to the
    mean: t = mean_thickness + mfp * (ln <I> - ln I). Returns a map of the micrograph's shape (nm, >= 0).
    """
    img = np.asarray(micrograph, dtype=np.float64)
    lo, hi = np.percentile(img, [0.1, 99.9])
    img = np.clip(img, lo, hi)
    low = ndimage.gaussian_filter(img, lowpass_px)
    h, w = low.shape
    ph, pw = max(1, h // patch_px), max(1, w // patch_px)
    patches = low[: ph * patch_px, : pw * patch_px].reshape(ph, patch_px, pw, patch_px).mean(axis=(1, 3))
    k = int(min(n_groups, patches.size))
    centroids, labels = kmeans2(patches.reshape(-1, 1), k, minit="++", seed=seed)
    levels = centroids[labels, 0].reshape(ph, pw)
    levels = ndimage.zoom(levels, (h / ph, w / pw), order=1)[:h, :w]
    if levels.shape != (h, w):
        levels = np.pad(levels, ((0, h - levels.shape[0]), (0, w - levels.shape[1])), mode="edge")
    levels = ndimage.gaussian_filter(levels, smooth_px)
    levels = np.clip(levels, 1e-6 * max(abs(levels.max()), 1e-12), None)
    if levels.min() <= 0:
        levels = levels - levels.min() + 1e-6
    t = mean_thickness_nm + mfp_nm * (np.log(levels.mean()) - np.log(levels))
    return np.clip(t, 0.0, None).astype(np.float32)
