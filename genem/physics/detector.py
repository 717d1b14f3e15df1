"""Detector: electron dose, modulation transfer and shot noise."""
from __future__ import annotations


import numpy as np


def read_mtf_star(path) -> tuple[np.ndarray, np.ndarray]:
    """(frequency in 1/pixel of the detector, MTF value) from a RELION MTF STAR file."""
    import starfile

    df = starfile.read(path, always_dict=True)
    df = next(iter(df.values()))
    if "rlnResolutionInversePixel" not in df.columns or "rlnMtfValue" not in df.columns:
        raise ValueError(f"{path}: not a RELION MTF STAR (needs rlnResolutionInversePixel, rlnMtfValue)")
    return df["rlnResolutionInversePixel"].to_numpy(float), df["rlnMtfValue"].to_numpy(float)


def mtf_on_rfft2_grid(shape, freq_per_px: np.ndarray, mtf: np.ndarray) -> np.ndarray:
    """Interpolate a radial MTF onto the rfft2 grid of an image of ``shape``."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    r = np.sqrt(kx ** 2 + ky ** 2)
    return np.interp(r, freq_per_px, mtf, right=mtf[-1]).astype(np.float32)


def apply_mtf(image: np.ndarray, freq_per_px, mtf) -> np.ndarray:
    f = np.fft.rfft2(image)
    f *= mtf_on_rfft2_grid(image.shape, np.asarray(freq_per_px), np.asarray(mtf))
    return np.fft.irfft2(f, s=image.shape).astype(np.float32)


def expected_counts(intensity: np.ndarray, dose_e_per_A2: float, pixel_size_A: float) -> np.ndarray:
    """Mean electrons per pixel: dose x pixel area x relative intensity (1 = vacuum)."""
    return (dose_e_per_A2 * pixel_size_A ** 2 * np.asarray(intensity)).astype(np.float32)


def sample_shot_noise(rng: np.random.Generator, expected: np.ndarray) -> np.ndarray:
    """Poisson counts for the expected electrons per pixel."""
    return rng.poisson(np.clip(expected, 0, None)).astype(np.float32)


