"""Particle extraction as RELION's Extract does it (box centred on the truncated coordinate, contrast inverted,
background normalised to mean 0 and sd 1 outside a circle of 75% of the half box: :mod:`genem.ops.normalize`)."""
from __future__ import annotations

import numpy as np

from genem.ops import background_stats_2d


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
    m, s = background_stats_2d(noisy)
    if sd is not None:
        s = np.full((len(noisy), 1, 1), float(sd) if sd > 0 else 1.0)
    sign = -1.0 if invert else 1.0
    res = [(sign * (noisy - m) / s).astype(np.float32)]
    res += [(sign * (o - m) / s).astype(np.float32) for o in others]
    return res if others else res[0]
