"""Particle extraction as RELION's Extract does it (box centred on the truncated coordinate, contrast inverted,
background normalised to mean 0 and sd 1 outside a circle of 75% of the half box)."""
from __future__ import annotations

import numpy as np


def background_mask(box: int, radius_fraction: float = 0.75) -> np.ndarray:
    c = np.arange(box) - box // 2
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    return r2 > (radius_fraction * box / 2) ** 2


def extract_boxes(micrograph: np.ndarray, x_px, y_px, box: int) -> np.ndarray:
    """(n, box, box) boxes centred (index box//2) on the truncated coordinates; out-of-frame pixels get the mean."""
    h, w = micrograph.shape
    ix = np.floor(np.asarray(x_px)).astype(int)
    iy = np.floor(np.asarray(y_px)).astype(int)
    out = np.empty((len(ix), box, box), dtype=np.float32)
    pad = box
    padded = np.pad(micrograph, pad, mode="constant", constant_values=float(micrograph.mean()))
    for k, (x, y) in enumerate(zip(ix, iy)):
        r0, c0 = y - box // 2 + pad, x - box // 2 + pad
        out[k] = padded[r0:r0 + box, c0:c0 + box]
    return out


def normalise_like_relion(noisy: np.ndarray, *others: np.ndarray, invert: bool = True, sd: float | None = None):
    """Normalise boxes by the noisy boxes' background mean/sd; apply the same affine map to ``others`` (clean twins).

    ``sd`` replaces the per-box background sd by one value for all boxes: noise-free data have an almost empty
    background whose sd would give every particle its own arbitrary scale.
    """
    box = noisy.shape[-1]
    bg = background_mask(box)
    m = noisy[:, bg].mean(axis=1)[:, None, None]
    s = noisy[:, bg].std(axis=1)[:, None, None] if sd is None else np.full((len(noisy), 1, 1), float(sd))
    s = np.where(s > 0, s, 1.0)
    sign = -1.0 if invert else 1.0
    res = [(sign * (noisy - m) / s).astype(np.float32)]
    res += [(sign * (o - m) / s).astype(np.float32) for o in others]
    return res if others else res[0]
