"""The diffusion model's U-Net."""
import pytest
import torch

from genem.restore.unet import UNet, UNetConfig


def test_unet_any_size_and_noise_conditioning():
    torch.manual_seed(0)
    net = UNet(UNetConfig(base_channels=8)).eval()
    x = torch.randn(2, 2, 64, 64)
    assert net(x, torch.tensor([0.3, 0.9])).shape == (2, 1, 64, 64)
    assert net(torch.randn(1, 2, 96, 40), 0.5).shape == (1, 1, 96, 40)
    # the noise level must change the output (FiLM is wired): perturb the FiLM weights away from zero init
    assert not torch.allclose(net(x, 0.1), net(x, 0.9))
    with pytest.raises(ValueError):
        net(torch.randn(1, 2, 30, 30), 0.5)
