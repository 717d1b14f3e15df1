"""Whole-micrograph inference by overlapping tiles (:func:`genem.ops.blend_tiles_2d`).

Each tile is run with ``context_px`` of extra pixels on every side whose outputs are thrown away (weight 0),
then neighbouring tiles are cross-faded over ``blend_px`` with a raised-cosine ramp. With a context at least
the generator's receptive-field radius and tile offsets on its stride grid, the result equals a single pass
over the whole micrograph (up to float rounding), so no seams can show; the blend only hides differences
when the context is chosen smaller than that.
"""
from __future__ import annotations

import numpy as np
import torch

from genem.ops import blend_tiles_2d, blend_window_1d


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
    generator.eval()
    dev = torch.device(device)
    inner = 2 * context_px + blend_px
    windows = tuple(blend_window_1d(t, context_px, blend_px) for t in (th, tw))
    return blend_tiles_2d(lambda t: generator(t[:, None].to(dev)).float()[:, 0], img, tile_hw=(th, tw),
                          step_hw=(th - inner, tw - inner), window_hw=windows, pad_px=before, batch_size=batch_size)
