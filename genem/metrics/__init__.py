"""Image-quality and Fourier metrics (pure torch, leading batch dimensions)."""
from .fourier import frc
from .image import image_snr, psnr, ssim

__all__ = ["frc", "image_snr", "psnr", "ssim"]
