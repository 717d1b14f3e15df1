"""Whole-micrograph inference by overlapping tiles.

Each tile is run with ``context_px`` of extra pixels on every side whose outputs are thrown away (weight 0),
then neighbouring tiles are cross-faded over ``blend_px`` with a raised-cosine ramp. With a context at least
the generator's receptive-field radius and tile offsets on its stride grid, the result equals a single pass
over the whole micrograph (up to float rounding), so no seams can show; the blend only hides differences
when the context is chosen smaller than that.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def blend_window_1d(tile_px: int, context_px: int, blend_px: int) -> np.ndarray:
    """Weights along one tile axis: 0 on the context, raised-cosine ramp over ``blend_px``, then 1 (symmetric)."""
    w = np.zeros(tile_px, np.float64)
    inner = tile_px - 2 * context_px
    if inner <= 2 * blend_px:
        raise ValueError(f"tile {tile_px} too small for context {context_px} and blend {blend_px}")
    w[context_px:tile_px - context_px] = 1.0
    if blend_px > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(blend_px) + 0.5) / blend_px)
        w[context_px:context_px + blend_px] = ramp
        w[tile_px - context_px - blend_px:tile_px - context_px] = ramp[::-1]
    return w


def tile_starts(length: int, tile_px: int, step: int) -> list[int]:
    n = max(1, math.ceil(max(length - tile_px, 0) / step) + 1)
    return [i * step for i in range(n)]


@torch.no_grad()
def translate_image_tiled(generator: torch.nn.Module, image_hw: np.ndarray, *, tile_px: int = 1024,
                          context_px: int = 48, blend_px: int = 32, batch_size: int = 1,
                          device: str | torch.device = "cpu") -> np.ndarray:
    """Run ``generator`` over a (H, W) image tile by tile; returns a float32 (H, W) image."""
    m = int(getattr(generator, "multiple", 1))
    for name, v in (("tile_px", tile_px), ("context_px", context_px), ("blend_px", blend_px)):
        if v % m:
            raise ValueError(f"{name}={v} must be a multiple of {m} (the generator's stride)")
    img = np.asarray(image_hw, np.float32)
    h, w = img.shape
    if tile_px - 2 * context_px - blend_px <= 0:
        raise ValueError("tile_px must exceed 2 * context_px + blend_px")
    # pad: context (+ the first ramp, so the image itself is covered at full weight) before, enough after
    before = context_px + blend_px
    # an image smaller than a tile is run as one tile of just its (padded) size
    th = min(tile_px, -(-(h + 2 * before) // m) * m)
    tw = min(tile_px, -(-(w + 2 * before) // m) * m)
    rows = tile_starts(h + 2 * before, th, th - 2 * context_px - blend_px)
    cols = tile_starts(w + 2 * before, tw, tw - 2 * context_px - blend_px)
    hp, wp = rows[-1] + th, cols[-1] + tw
    padded = np.pad(img, ((before, hp - h - before), (before, wp - w - before)), mode="reflect")
    win = np.outer(blend_window_1d(th, context_px, blend_px), blend_window_1d(tw, context_px, blend_px))
    out = np.zeros((hp, wp), np.float64)
    wsum = np.zeros((hp, wp), np.float64)
    positions = [(r, c) for r in rows for c in cols]
    generator.eval()
    dev = torch.device(device)
    for i in range(0, len(positions), batch_size):
        chunk = positions[i:i + batch_size]
        x = np.stack([padded[r:r + th, c:c + tw] for r, c in chunk])[:, None]
        y = generator(torch.from_numpy(x).to(dev)).float().cpu().numpy()[:, 0]
        for (r, c), t in zip(chunk, y):
            out[r:r + th, c:c + tw] += win * t
            wsum[r:r + th, c:c + tw] += win
    res = out[before:before + h, before:before + w] / wsum[before:before + h, before:before + w]
    return res.astype(np.float32)
