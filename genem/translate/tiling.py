"""Whole-micrograph inference by overlapping tiles (:func:`genem.ops.blend_tiles_2d`).

Each tile is run with ``context_px`` of extra pixels on every side whose outputs are thrown away (weight 0),
then neighbouring tiles are cross-faded over ``blend_px`` with a raised-cosine ramp. With a context at least
the generator's receptive-field radius and tile offsets on its stride grid, the result equals a single pass
over the whole micrograph (up to float rounding), so no seams can show; the blend only hides differences
when the context is chosen smaller than that.

Speed: ``tile_px`` is the largest tile; the padded image is split into as few tiles as that allows, all of one
size, so no tile is mostly padding. With a context of at least the receptive radius no kept output pixel sees a
network's own border padding, so the networks' reflect padding (a copy per convolution) is swapped for the zero
padding convolutions do in place; the network runs channels-last under ``torch.inference_mode``.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch

from genem.ops import blend_tiles_2d, blend_window_1d


def _even_tile(length: int, tile_px: int, inner: int, m: int) -> int:
    """The size (a multiple of ``m``, <= ``tile_px``) of the fewest equal tiles, overlapping by ``inner``, that
    cover ``length``."""
    n = max(1, math.ceil((length - inner) / (tile_px - inner)))
    return min(tile_px, -(-math.ceil((length - inner) / n) // m) * m + inner)


def inference_generator(generator: torch.nn.Module, context_px: int) -> torch.nn.Module:
    """An eval-mode, channels-last copy of ``generator``; with zero padding when ``context_px`` covers its
    receptive radius (the padding then never reaches a kept pixel)."""
    g = copy.deepcopy(generator).eval()
    if context_px >= getattr(generator, "receptive_radius_px", math.inf):
        for mod in g.modules():
            if hasattr(mod, "padding_mode"):  # convolutions and blurs
                mod.padding_mode = "zeros"
    return g.to(memory_format=torch.channels_last)


@torch.inference_mode()
def translate_image_tiled(generator: torch.nn.Module, image_hw: np.ndarray, *, tile_px: int = 2048,
                          context_px: int = 48, blend_px: int = 32, batch_size: int = 1,
                          device: str | torch.device = "cpu") -> np.ndarray:
    """Run ``generator`` over a (H, W) image tile by tile; returns a float32 (H, W) image."""
    m = int(getattr(generator, "multiple", 1))
    for name, v in (("tile_px", tile_px), ("context_px", context_px), ("blend_px", blend_px)):
        if v % m:
            raise ValueError(f"{name}={v} must be a multiple of {m} (the generator's stride)")
    img = np.asarray(image_hw, np.float32)
    h, w = img.shape
    inner = 2 * context_px + blend_px
    if tile_px - inner <= 0:
        raise ValueError("tile_px must exceed 2 * context_px + blend_px")
    # pad: context (+ the first ramp, so the image itself is covered at full weight) before, enough after
    before = context_px + blend_px
    th, tw = (_even_tile(n + 2 * before, tile_px, inner, m) for n in (h, w))
    dev = torch.device(device)
    g = inference_generator(generator, context_px).to(dev)
    windows = tuple(blend_window_1d(t, context_px, blend_px) for t in (th, tw))

    def run(t):
        x = t[:, None].to(dev).contiguous(memory_format=torch.channels_last)
        return g(x).float()[:, 0]

    return blend_tiles_2d(run, img, tile_hw=(th, tw), step_hw=(th - inner, tw - inner), window_hw=windows,
                          pad_px=before, batch_size=batch_size)
