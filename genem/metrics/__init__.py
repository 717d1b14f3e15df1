"""Image-quality and Fourier metrics (pure torch, leading batch dimensions)."""
from .fourier import frc, radial_average_2d, radial_power_spectrum_2d
from .image import psnr, ssim

__all__ = ["frc", "psnr", "radial_average_2d", "radial_power_spectrum_2d", "ssim"]
