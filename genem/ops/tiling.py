"""Running an image-to-image operation over a large image by overlapping tiles, blended back into one image.

Each tile's output is weighted by a separable window and the weighted sum is divided by the summed weights, so
the weights form a partition of unity wherever the image is. A window is 0 on ``context_px`` at each edge (outputs
thrown away: a network sees that much of its neighbourhood beyond the part it is trusted on), then ramps up over
``blend_px`` (raised cosine, or linear), then is 1. Tiles start on a grid of ``step_px``; the image is
reflect-padded by ``pad_px`` before (and as much as the last tile needs after) and cropped back.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ._arrays import as_tensor, like_input


def blend_window_1d(tile_px: int, context_px: int, blend_px: int, *, ramp: str = "cosine") -> torch.Tensor:
    """Weights (float64) along one tile axis: 0 on the context, a ramp over ``blend_px`` ("cosine": raised
    cosine; "linear": (i + 0.5) / blend_px), then 1 (symmetric)."""
    w = torch.zeros(tile_px, dtype=torch.float64)
    if tile_px - 2 * context_px <= 2 * blend_px:
        raise ValueError(f"tile {tile_px} too small for context {context_px} and blend {blend_px}")
    w[context_px:tile_px - context_px] = 1.0
    if blend_px > 0:
        t = (torch.arange(blend_px, dtype=torch.float64) + 0.5) / blend_px
        r = {"cosine": lambda: 0.5 - 0.5 * torch.cos(math.pi * t), "linear": lambda: t}[ramp]()
        w[context_px:context_px + blend_px] = r
        w[tile_px - context_px - blend_px:tile_px - context_px] = r.flip(0)
    return w


def tile_starts_1d(length: int, tile_px: int, step_px: int) -> list[int]:
    """Starts 0, step, 2 step, ... of as few tiles as cover ``length`` (the last may run past it)."""
    n = max(1, math.ceil(max(length - tile_px, 0) / step_px) + 1)
    return [i * step_px for i in range(n)]


def pad_reflect_2d(images: torch.Tensor, pad_hw: tuple) -> torch.Tensor:
    """Reflect-pad (..., H, W) by ``pad_hw`` = ((top, bottom), (left, right)), as numpy's ``mode="reflect"`` does
    (any pad size: the image is mirrored again and again; a 1-pixel axis is repeated)."""
    out = images
    for axis, (before, after) in zip((-2, -1), pad_hw):
        n = out.shape[axis]
        idx = torch.arange(-before, n + after)
        if n > 1:
            period = 2 * (n - 1)
            idx = idx % period
            idx = torch.where(idx >= n, period - idx, idx)
        else:
            idx = torch.zeros_like(idx)
        out = out.index_select(axis % out.ndim, idx.to(out.device))
    return out


def pad_to_multiple_2d(images: torch.Tensor, multiple: int):
    """Reflect-pad (..., H, W) on the bottom/right to multiples of ``multiple``; returns (padded, (H, W))."""
    h, w = images.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return images, (h, w)
    lead = images.shape[:-2]
    x = images.reshape(-1, 1, h, w)
    x = F.pad(x, (0, pw, 0, ph), mode="reflect" if (ph < h and pw < w) else "replicate")
    return x.reshape(lead + x.shape[-2:]), (h, w)


@torch.no_grad()
def blend_tiles_2d(fn: Callable[[torch.Tensor], torch.Tensor], image, *, tile_hw: tuple, step_hw: tuple,
                   window_hw: tuple, pad_px: int = 0, batch_size: int = 1):
    """Apply ``fn`` (B, th, tw) -> (B, th, tw) to an image (H, W) by overlapping tiles and blend the outputs.

    ``window_hw`` = (window along rows (th,), window along columns (tw,)), e.g. from :func:`blend_window_1d`.
    Tiles go to ``fn`` ``batch_size`` at a time, row by row, in the image's dtype; outputs are accumulated in
    float64 and the result (H, W) is in the image's dtype (numpy in, numpy out). An identity ``fn`` gives the
    image back exactly (to float rounding) whenever every pixel gets some weight.
    """
    x, was_numpy = as_tensor(image)
    h, w = x.shape
    (th, tw), (sh, sw) = tile_hw, step_hw
    rows = tile_starts_1d(h + 2 * pad_px, th, sh)
    cols = tile_starts_1d(w + 2 * pad_px, tw, sw)
    hp, wp = rows[-1] + th, cols[-1] + tw
    padded = pad_reflect_2d(x, ((pad_px, hp - h - pad_px), (pad_px, wp - w - pad_px)))
    win = torch.outer(torch.as_tensor(window_hw[0], dtype=torch.float64),
                      torch.as_tensor(window_hw[1], dtype=torch.float64))
    acc = torch.zeros((hp, wp), dtype=torch.float64)
    wsum = torch.zeros((hp, wp), dtype=torch.float64)
    corners = [(r, c) for r in rows for c in cols]
    for b0 in range(0, len(corners), batch_size):
        chunk = corners[b0:b0 + batch_size]
        out = fn(torch.stack([padded[r:r + th, c:c + tw] for r, c in chunk])).detach().cpu()
        for (r, c), t in zip(chunk, out):
            acc[r:r + th, c:c + tw] += win * t
            wsum[r:r + th, c:c + tw] += win
    crop = (slice(pad_px, pad_px + h), slice(pad_px, pad_px + w))
    res = acc[crop] / wsum[crop]
    return like_input(res.to(x.dtype), was_numpy)
