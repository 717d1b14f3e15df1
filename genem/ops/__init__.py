"""Image operations with one home: pure functions on torch tensors (numpy arrays accepted and given back) with
leading batch dimensions, used by simulate, translate, restore, metrics and the benchmarks."""
from .fourier import radial_average_2d, radial_power_spectrum_2d, resample_fourier_2d, resample_fourier_3d
from .normalize import (BG_RADIUS_FRACTION, background_mask_2d, background_stats_2d, fit_background_trend_2d,
                        normalize_background_2d, normalize_background_pair_2d, normalize_image_2d, robust_location_scale)
from .tiling import blend_tiles_2d, blend_window_1d, pad_reflect_2d, pad_to_multiple_2d, tile_starts_1d

__all__ = [
    "BG_RADIUS_FRACTION", "background_mask_2d", "background_stats_2d", "blend_tiles_2d", "blend_window_1d",
    "fit_background_trend_2d",
    "normalize_background_2d", "normalize_background_pair_2d", "normalize_image_2d", "pad_reflect_2d",
    "pad_to_multiple_2d", "radial_average_2d", "radial_power_spectrum_2d", "resample_fourier_2d",
    "resample_fourier_3d", "robust_location_scale", "tile_starts_1d",
]
