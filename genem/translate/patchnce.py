"""Multi-layer PatchNCE (Park et al. 2020, CUT) with GenEM's mask-guided negatives.

For each chosen generator-encoder layer, features of the translated image (queries) and of the input
(keys, detached) are read at the same sampled locations, passed through a small per-layer MLP head and
L2-normalised. The loss is a cross-entropy that picks each query's own key (positive) among negatives,
with logits = cosine similarity / temperature. Which keys count as negatives is decided by
``genem.translate.sampling.negative_allowed_mask``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .sampling import (downsample_mask_2d, negative_allowed_mask, sample_patch_ids_masked,
                       sample_patch_ids_random)


class PatchProjector(nn.Module):
    """One small MLP head per layer (Linear-ReLU-Linear to ``dim``) applied to gathered patch features."""

    def __init__(self, channels: list[int], dim: int = 256):
        super().__init__()
        self.channels = list(channels)
        self.dim = int(dim)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(c, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim)) for c in channels)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, layer: int, feat_bchw: torch.Tensor, ids_bp: torch.Tensor) -> torch.Tensor:
        """Gather features at flat ids (B, P) of (B, C, H, W), project and L2-normalise: (B, P, dim)."""
        b, c, h, w = feat_bchw.shape
        flat = feat_bchw.reshape(b, c, h * w)
        g = torch.gather(flat, 2, ids_bp[:, None, :].expand(b, c, ids_bp.shape[1])).transpose(1, 2)
        return F.normalize(self.heads[layer](g), dim=-1, eps=1e-7)


def patchnce_logits(q_bpd: torch.Tensor, k_bpd: torch.Tensor, allowed_bpp: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    """Logits (B, P, 1 + P): column 0 the positive (same location), then every key, disallowed ones at -inf-ish."""
    k = k_bpd.detach()
    pos = (q_bpd * k).sum(-1, keepdim=True)                       # (B, P, 1)
    neg = torch.bmm(q_bpd, k.transpose(1, 2))                      # (B, P, P)
    neg = neg.masked_fill(~allowed_bpp, -10.0)                      # cos >= -1, so exp(-10/T) ~ 0
    return torch.cat([pos, neg], dim=-1) / temperature


def patchnce_loss_layer(q_bpd, k_bpd, allowed_bpp, temperature: float = 0.07) -> torch.Tensor:
    logits = patchnce_logits(q_bpd, k_bpd, allowed_bpp, temperature)
    target = torch.zeros(logits.shape[:2], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.flatten(0, 1), target.flatten())


def compute_patchnce_loss(feats_src: list[torch.Tensor], feats_out: list[torch.Tensor], projector: PatchProjector,
                          *, masks_bhw: torch.Tensor | None = None, n_patches: int = 256,
                          temperature: float = 0.07, min_per_class: int = 8,
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Mean PatchNCE over layers between input features (keys) and translated-image features (queries).

    ``masks_bhw`` (particle masks at image resolution) switches on mask-guided sampling; None gives CUT's random
    sampling. Returns ``(loss, info)`` with info["guided_fraction"] = share of (image, layer) pairs that were guided.
    """
    total = 0.0
    n_guided, n_all = 0, 0
    for layer, (fs, fo) in enumerate(zip(feats_src, feats_out)):
        b, _, h, w = fs.shape
        if masks_bhw is not None:
            m = downsample_mask_2d(masks_bhw, (h, w))
            ids, labels, guided = sample_patch_ids_masked(m, n_patches, min_per_class=min_per_class,
                                                          generator=generator)
        else:
            ids = sample_patch_ids_random(b, h, w, n_patches, device=fs.device, generator=generator)
            labels = torch.zeros_like(ids, dtype=torch.bool)
            guided = torch.zeros(b, dtype=torch.bool, device=fs.device)
        allowed = negative_allowed_mask(labels, guided)
        k = projector(layer, fs, ids)
        q = projector(layer, fo, ids)
        total = total + patchnce_loss_layer(q, k, allowed, temperature)
        n_guided += int(guided.sum())
        n_all += b
    return total / len(feats_src), {"guided_fraction": n_guided / max(n_all, 1)}
