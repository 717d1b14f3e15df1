"""Networks for noise translation: a small ResNet generator for single-channel micrographs and a PatchGAN
discriminator trained with the least-squares GAN loss (as CUT / CryoGEM use them, slimmed for CPUs).

The generator has no normalisation layers: its output at a pixel depends only on the pixels around it, never
on statistics of the whole tile, so a micrograph translated tile by tile with overlap shows no seams.

Full-resolution detail has its own path (``GeneratorConfig.skip``): G(x) = x + head(decoder + stem features), so
fine-grained noise is shaped from the input at full resolution. Without it (models saved before the option
existed) every output pixel comes out of the 1/4-resolution core through two upsamplings: the only way to make the
fine noise of a real micrograph is to let the upsampling convolutions invent it, and their output depends on the
pixel position modulo the stride: isolated spectral peaks at 1/4 and 1/2 cycles/px and directional texture, which
``genem.metrics.artefacts`` finds. The resampling is anti-aliased too (``antialias``): a [1, 2, 1] binomial blur
before each stride-2 convolution, bilinear upsampling.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from genem.config import Config


@dataclass(frozen=True)
class GeneratorConfig(Config):
    config_name = "generator config"

    base_channels: int = 8    # channels after the stem; doubled at each downsampling
    n_down: int = 2           # stride-2 stages (output size must be divisible by 2**n_down; apply pads)
    n_blocks: int = 3         # residual blocks at the lowest resolution
    antialias: bool = True    # binomial blur before each stride-2 convolution, bilinear (not nearest) upsampling
    skip: bool = True         # full-resolution path: stem features added before the head, output = input + head

    def __post_init__(self):
        if self.base_channels < 1 or self.n_down < 0 or self.n_blocks < 0:
            raise ValueError(f"invalid generator config {self}")


@dataclass(frozen=True)
class DiscriminatorConfig(Config):
    config_name = "discriminator config"

    base_channels: int = 32
    n_layers: int = 3

    def __post_init__(self):
        if self.base_channels < 1 or self.n_layers < 1:
            raise ValueError(f"invalid discriminator config {self}")


def saved_generator_config(d: dict) -> dict:
    """A saved generator configuration as written: one from before ``antialias`` existed had none."""
    return {"antialias": False, "skip": False, **d}


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, padding=1, padding_mode="reflect")
        self.c2 = nn.Conv2d(c, c, 3, padding=1, padding_mode="reflect")

    def forward(self, x):
        return x + self.c2(F.relu(self.c1(x)))


class Blur(nn.Module):
    """Depthwise [1, 2, 1] x [1, 2, 1] / 16 blur (reflect-padded), the low-pass before a stride-2 step."""

    def __init__(self, c: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (torch.outer(k, k) / 16).expand(c, 1, 3, 3).contiguous(), persistent=False)
        self.padding_mode = "reflect"

    def forward(self, x):
        x = F.pad(x, (1, 1, 1, 1), mode="reflect") if self.padding_mode == "reflect" else F.pad(x, (1, 1, 1, 1))
        return F.conv2d(x, self.kernel, groups=x.shape[1])


class Generator(nn.Module):
    """ResNet-style encoder / residual core / decoder, 1 channel in and out, predicting a residual: G(x) = x + r(x)
    (with ``skip``; r also sees the stem's full-resolution features).

    Starting at the identity (small output layer) gives the discriminator something close to the data from the
    first step, so a CPU-sized run learns quickly instead of first having to grow its output scale.

    ``encode(x)`` returns the feature maps PatchNCE reads: after the stem, after each downsampling, and after
    the first and middle residual blocks (``feature_channels`` lists their channel counts).
    """

    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        self.config = config
        c = config.base_channels
        self.stem = nn.Conv2d(1, c, 7, padding=3, padding_mode="reflect")
        downs, ch = [], c
        for _ in range(config.n_down):
            conv = nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, padding_mode="reflect")
            downs.append(nn.Sequential(Blur(ch), conv) if config.antialias else conv)
            ch *= 2
        self.downs = nn.ModuleList(downs)
        self.blocks = nn.ModuleList(ResBlock(ch) for _ in range(config.n_blocks))
        ups = []
        for _ in range(config.n_down):
            ups.append(nn.Conv2d(ch, ch // 2, 3, padding=1, padding_mode="reflect"))
            ch //= 2
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv2d(ch, 1, 7, padding=3, padding_mode="reflect")
        self._nce_block_ids = sorted({0, config.n_blocks // 2}) if config.n_blocks else []
        self.feature_channels = ([c] + [c * 2 ** (i + 1) for i in range(config.n_down)]
                                 + [c * 2 ** config.n_down] * len(self._nce_block_ids))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for b in self.blocks:  # residual blocks start close to the identity
            nn.init.normal_(b.c2.weight, 0.0, 0.01)
        nn.init.kaiming_normal_(self.head.weight, nonlinearity="linear")
        if config.skip:  # start at the identity: G(x) = x + (small)
            nn.init.normal_(self.head.weight, 0.0, 1e-3)

    @property
    def multiple(self) -> int:
        return 2 ** self.config.n_down

    @property
    def receptive_radius_px(self) -> int:
        """How far (px) an input pixel reaches in the output: 3 for each 7x7 end, 1 (at that scale) per 3x3
        convolution on the way down and in the residual blocks, 2 per upsampling + 3x3 convolution (nearest
        upsampling shifts by up to one coarse pixel), 1 more per blur and per bilinear upsampling."""
        n = self.config.n_down
        aa = (2 ** n - 1) if self.config.antialias else 0  # one more pixel per blur and per bilinear step
        return 3 + (2 ** n - 1) + aa + 2 * self.config.n_blocks * 2 ** n + 2 * (2 ** n - 1) + aa + 3

    def _encode(self, x, collect: bool):
        feats = []
        h = F.relu(self.stem(x))
        feats.append(h)
        for d in self.downs:
            h = F.relu(d(h))
            feats.append(h)
        for i, b in enumerate(self.blocks):
            h = b(h)
            if i in self._nce_block_ids:
                feats.append(h)
        return h, feats

    def encode(self, x_b1hw: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features for PatchNCE (list of (B, C_l, H_l, W_l))."""
        # the residual blocks after the last collected one do not matter here; run them anyway for simplicity
        return self._encode(x_b1hw, True)[1]

    def forward(self, x_b1hw: torch.Tensor) -> torch.Tensor:
        h, feats = self._encode(x_b1hw, False)
        for u in self.ups:
            up = (F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False) if self.config.antialias
                  else F.interpolate(h, scale_factor=2, mode="nearest"))
            h = F.relu(u(up))
        if self.config.skip:
            return x_b1hw + self.head(h + feats[0])
        return self.head(h)


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix / CUT): a map of real-vs-fake scores, one per ~70 px receptive field at 3 layers."""

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        self.config = config
        c = config.base_channels
        layers = [nn.Conv2d(1, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, config.n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(c * prev, c * mult, 4, stride=2, padding=1),
                       nn.InstanceNorm2d(c * mult, affine=True), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** config.n_layers, 8)
        layers += [nn.Conv2d(c * prev, c * mult, 4, stride=1, padding=1),
                   nn.InstanceNorm2d(c * mult, affine=True), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(c * mult, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x_b1hw: torch.Tensor) -> torch.Tensor:
        return self.net(x_b1hw)


def lsgan_loss(scores: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al. 2017): mean (D - 1)^2 for real targets, mean D^2 for fake ones."""
    target = 1.0 if target_is_real else 0.0
    return ((scores - target) ** 2).mean()
