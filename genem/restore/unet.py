"""A small fully convolutional U-Net for 2D images, with optional SR3-style noise-level conditioning.

- SR3 (Saharia et al. 2021): the noisy particle (the conditioning image) is concatenated with x_t as input
  channels; the noise level sqrt(abar) enters through a sinusoidal embedding (Vaswani et al. 2017) and an MLP,
  and each residual block adds a per-channel scale and shift of it (FiLM, as in Improved DDPM / SR3's
  "feature-wise affine").
- Without conditioning (``noise_embedding=False``) the same network is the post-processing U-Net.
- No attention and no fixed-size layers, so one network runs on any image whose sides are multiples of
  2**(levels-1) (callers pad): models trained at box 64 apply to box 128 particles and to micrograph tiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from genem.config import Config


@dataclass(frozen=True)
class UNetConfig(Config):
    config_name = "U-Net config"

    in_channels: int = 2
    out_channels: int = 1
    base_channels: int = 32
    channel_mults: tuple = (1, 2, 2)
    blocks_per_level: int = 1
    noise_embedding: bool = True
    dropout: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "channel_mults", tuple(int(m) for m in self.channel_mults))
        if self.in_channels < 1 or self.out_channels < 1 or self.base_channels < 4:
            raise ValueError("channel counts must be positive (base_channels >= 4)")
        if not self.channel_mults or self.blocks_per_level < 1:
            raise ValueError("need at least one level and one block per level")

    @property
    def stride(self) -> int:
        return 2 ** (len(self.channel_mults) - 1)


def embed_noise_level(level: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of a continuous noise level in [0, 1] (scaled by 1000 as in SR3/WaveGrad)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=level.device, dtype=torch.float32) / half)
    arg = 1000.0 * level.float().reshape(-1, 1) * freqs[None]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, c), c)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int | None, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * cout) if emb_dim else None
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        # without autograd (inference) the element-wise steps work in place on their fresh temporaries: less
        # memory traffic on CPU; the arithmetic is the same
        inplace = not torch.is_grad_enabled()
        h = self.conv1(F.silu(self.norm1(x), inplace=inplace))
        h = self.norm2(h)
        if self.film is not None:
            scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
            h = h.mul_(1 + scale).add_(shift) if inplace else h * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h, inplace=inplace)))
        return h.add_(self.skip(x)) if inplace else h + self.skip(x)


class UNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        c0 = config.base_channels
        chans = [c0 * m for m in config.channel_mults]
        emb_dim = 4 * c0 if config.noise_embedding else None
        if emb_dim:
            self.emb = nn.Sequential(nn.Linear(c0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Conv2d(config.in_channels, c0, 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        cin = c0
        for i, c in enumerate(chans):
            blocks = nn.ModuleList()
            for _ in range(config.blocks_per_level):
                blocks.append(ResBlock(cin, c, emb_dim, config.dropout))
                cin = c
            self.down.append(blocks)
            self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(chans) - 1 else nn.Identity())
        self.mid = ResBlock(cin, cin, emb_dim, config.dropout)
        self.up = nn.ModuleList()
        for i, c in reversed(list(enumerate(chans))):
            blocks = nn.ModuleList()
            for j in range(config.blocks_per_level):
                blocks.append(ResBlock(cin + (c if j == 0 else 0), c, emb_dim, config.dropout))
                cin = c
            self.up.append(blocks)
        self.out = nn.Sequential(_norm(cin), nn.SiLU(), nn.Conv2d(cin, config.out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor | None = None) -> torch.Tensor:
        s = self.config.stride
        if x.shape[-1] % s or x.shape[-2] % s:
            raise ValueError(f"image sides must be multiples of {s}, got {tuple(x.shape[-2:])}")
        emb = None
        if self.config.noise_embedding:
            if noise_level is None:
                raise ValueError("this U-Net needs a noise level")
            level = torch.as_tensor(noise_level, device=x.device, dtype=torch.float32).reshape(-1)
            if level.numel() == 1:
                level = level.expand(x.shape[0])
            emb = self.emb(embed_noise_level(level, self.config.base_channels))
        h = self.inp(x)
        skips = []
        for blocks, ds in zip(self.down, self.downsample):
            for b in blocks:
                h = b(h, emb)
            skips.append(h)
            h = ds(h)
        h = self.mid(h, emb)
        for blocks in self.up:
            skip = skips.pop()
            if h.shape[-1] != skip.shape[-1]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = torch.cat([h, skip], 1)
            for b in blocks:
                h = b(h, emb)
        return self.out(h)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
