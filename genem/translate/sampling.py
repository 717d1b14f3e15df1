"""Mask-guided patch sampling for PatchNCE (GenEM's change to CUT).

CUT contrasts each query patch of the translated image against the patch at the same place in the input
(positive) and against other random patches of the input (negatives). GenEM draws the patches with the
simulator's particle masks: half the queries sit on particles, half on background, and a particle query's
negatives are background patches (and the reverse), so translation must keep particles distinguishable from
the ice around them. An image whose mask is empty, full, or too small at a layer's resolution falls back to
CUT's random sampling for that image and layer, which never fails.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def downsample_mask_2d(mask: torch.Tensor, shape_hw: tuple[int, int], threshold: float = 0.5) -> torch.Tensor:
    """Particle masks (B, H, W) (bool or 0/1) at a feature map's resolution: True where >= ``threshold`` covered."""
    m = mask.to(torch.float32)[:, None]
    if tuple(m.shape[-2:]) != tuple(shape_hw):
        m = F.adaptive_avg_pool2d(m, shape_hw)
    return m[:, 0] >= threshold


def sample_patch_ids_masked(mask_bhw: torch.Tensor | None, n_patches: int, *, min_per_class: int = 8,
                            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Choose ``n_patches`` locations per image of a (B, H, W) feature grid.

    Returns ``(ids (B, P) flat indices into H*W, labels (B, P) bool particle flags, guided (B,) bool)``.
    An image is *guided* when both its particle and background areas hold at least ``min_per_class`` cells; its
    samples are then half particle, half background (without replacement inside each class when possible).
    Otherwise (or with ``mask_bhw=None``) its samples are uniform random cells, and ``guided`` is False.
    P = min(n_patches, H*W).
    """
    if mask_bhw is None:
        raise ValueError("give a mask, or use sample_patch_ids_random")
    b, h, w = mask_bhw.shape
    hw = h * w
    p = min(int(n_patches), hw)
    device = mask_bhw.device
    flat = mask_bhw.reshape(b, hw)
    ids = torch.empty((b, p), dtype=torch.long, device=device)
    guided = torch.zeros(b, dtype=torch.bool, device=device)
    for i in range(b):
        fg = torch.nonzero(flat[i], as_tuple=False)[:, 0]
        bg = torch.nonzero(~flat[i], as_tuple=False)[:, 0]
        if p >= 2 and min(fg.numel(), bg.numel()) >= min_per_class:
            n_fg = p // 2
            ids[i, :n_fg] = _choose(fg, n_fg, generator)
            ids[i, n_fg:] = _choose(bg, p - n_fg, generator)
            guided[i] = True
        else:
            ids[i] = torch.randperm(hw, generator=generator, device="cpu")[:p].to(device)
    labels = torch.gather(flat, 1, ids)
    return ids, labels, guided


def sample_patch_ids_random(b: int, h: int, w: int, n_patches: int, *, device="cpu",
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """CUT's sampling: ``min(n_patches, H*W)`` distinct random cells per image, (B, P)."""
    hw = h * w
    p = min(int(n_patches), hw)
    return torch.stack([torch.randperm(hw, generator=generator)[:p] for _ in range(b)]).to(device)


def negative_allowed_mask(labels: torch.Tensor, guided: torch.Tensor) -> torch.Tensor:
    """(B, P, P) bool: which sampled keys may serve as negatives for each query.

    Never the query's own location (that is its positive). For a guided image only keys of the opposite class
    (particle vs background); for an unguided image every other sampled key, as in CUT.
    """
    b, p = labels.shape
    eye = torch.eye(p, dtype=torch.bool, device=labels.device)[None]
    opposite = labels[:, :, None] != labels[:, None, :]
    allowed_guided = opposite & ~eye
    allowed_random = ~eye.expand(b, p, p)
    return torch.where(guided[:, None, None], allowed_guided, allowed_random)


def _choose(pool: torch.Tensor, n: int, generator) -> torch.Tensor:
    if pool.numel() >= n:
        perm = torch.randperm(pool.numel(), generator=generator)[:n].to(pool.device)
    else:
        perm = torch.randint(0, pool.numel(), (n,), generator=generator).to(pool.device)
    return pool[perm]
