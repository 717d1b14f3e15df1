"""The post-processing U-Net: a plain (unconditioned) U-Net that takes the noisy particle and the diffusion
output and returns a correction to the diffusion output, trained with MSE against the clean image on the
diffusion outputs of training particles (so it learns to remove what the few-step sampler gets wrong)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .unet import UNet, UNetConfig


def postprocess_config(base_channels: int = 16, channel_mults=(1, 2, 2)) -> UNetConfig:
    return UNetConfig(in_channels=2, out_channels=1, base_channels=base_channels, channel_mults=channel_mults,
                      noise_embedding=False)


class PostProcessor(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        if config.in_channels != 2 or config.noise_embedding:
            raise ValueError("the post-processing U-Net takes 2 channels (noisy, diffusion output), no noise level")
        self.net = UNet(config)
        self.config = config

    def forward(self, noisy: torch.Tensor, diffused: torch.Tensor) -> torch.Tensor:
        """Refined image (B, 1, H, W) = diffused + net(noisy, diffused)."""
        return diffused + self.net(torch.cat([noisy, diffused], 1))
