"""Image-quality and Fourier metrics (pure torch, leading batch dimensions)."""
from .fourier import frc, radial_average_2d, radial_power_spectrum_2d
from .image import image_snr, psnr, ssim

__all__ = ["frc", "image_snr", "psnr", "radial_average_2d", "radial_power_spectrum_2d", "ssim"]
