"""Real-micrograph preprocessing: dtypes, outliers, Fourier cropping to the simulation pixel size, errors."""
import mrcfile
import numpy as np
import pytest

from genem.io import GenemInputError
from genem.ops import normalize_image_2d, resample_fourier_2d
from genem.translate.data import (expand_real_paths, grid_tiles, prepare_real_micrograph, robust_clip_image,
                                  sample_tiles)


def _write(path, data, px):
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data)
        m.voxel_size = px


def test_fourier_crop_keeps_band_limited_signal_exactly():
    n, m = 96, 48
    y, x = np.mgrid[0:n, 0:n]
    # frequencies well below the new Nyquist (24 cycles per 48 px) survive unchanged in the coarser grid
    img = 3 + np.cos(2 * np.pi * (5 * x + 3 * y) / n) + 0.5 * np.sin(2 * np.pi * 11 * y / n)
    out = resample_fourier_2d(img.astype(np.float32), (m, m), centered=False)
    ys, xs = np.mgrid[0:m, 0:m] * (n / m)
    ref = 3 + np.cos(2 * np.pi * (5 * xs + 3 * ys) / n) + 0.5 * np.sin(2 * np.pi * 11 * ys / n)
    np.testing.assert_allclose(out, ref, atol=1e-4)


def test_fourier_crop_removes_frequencies_beyond_new_nyquist():
    n = 64
    x = np.arange(n)
    img = np.tile(np.cos(2 * np.pi * 25 * x / n), (n, 1)).astype(np.float32)  # 25 cycles > 16 (new Nyquist at 32 px)
    out = resample_fourier_2d(img, (32, 32), centered=False)
    assert np.abs(out).max() < 1e-4


def test_robust_clip_removes_hot_pixels_only():
    rng = np.random.default_rng(0)
    img = rng.normal(100, 10, (256, 256)).astype(np.float32)
    img[5, 7] = 1e6
    img[100, 200] = -1e5
    out = robust_clip_image(img, 6.0)
    assert out.max() < 100 + 6.5 * 10 and out.min() > 100 - 6.5 * 10
    inliers = np.abs(img - 100) < 40
    np.testing.assert_array_equal(out[inliers], img[inliers])


@pytest.mark.parametrize("dtype", [np.uint16, np.float16, np.float32])
def test_prepare_real_any_dtype_and_size(tmp_path, dtype):
    rng = np.random.default_rng(1)
    raw = rng.poisson(50, (300, 212)).astype(dtype)
    raw[10, 10] = 60000 if dtype != np.float16 else 6e4
    p = tmp_path / "real.mrc"
    _write(p, raw, 0.5)
    rm = prepare_real_micrograph(p, 1.0)
    assert rm.image.shape == (150, 106)
    assert rm.image.dtype == np.float32
    assert abs(rm.image.mean()) < 1e-4 and abs(rm.image.std() - 1) < 1e-3
    assert rm.image.max() < 8  # the hot pixel was clipped before the crop spread it around
    assert abs(rm.pixel_size_A - 1.0) < 0.01 and rm.source_pixel_size_A == 0.5
    assert rm.source_dtype == np.dtype(dtype).name


def test_prepare_real_equal_pixel_size_no_resampling(tmp_path):
    raw = np.random.default_rng(2).normal(size=(64, 80)).astype(np.float32)
    p = tmp_path / "r.mrc"
    _write(p, raw, 1.2)
    rm = prepare_real_micrograph(p, 1.205)
    assert rm.image.shape == (64, 80)
    np.testing.assert_allclose(rm.image, normalize_image_2d(robust_clip_image(raw))[0], atol=1e-6)


def test_prepare_real_errors(tmp_path):
    p = tmp_path / "coarse.mrc"
    _write(p, np.zeros((64, 64), np.float32), 2.0)
    with pytest.raises(GenemInputError, match="coarser than the simulation"):
        prepare_real_micrograph(p, 1.0)
    q = tmp_path / "nopx.mrc"
    _write(q, np.zeros((64, 64), np.float32), 0.0)
    with pytest.raises(GenemInputError, match="pixel size unknown"):
        prepare_real_micrograph(q, 1.0)
    prepare_real_micrograph(q, 1.0, pixel_size_A=0.5)  # an explicit pixel size fixes it
    bad = tmp_path / "corrupt.mrc"
    bad.write_bytes(b"this is not an MRC file" * 10)
    with pytest.raises(GenemInputError, match="corrupt.mrc"):
        prepare_real_micrograph(bad, 1.0)
    with pytest.raises(GenemInputError, match="no real micrographs found"):
        expand_real_paths([str(tmp_path / "nothing*.mrc")])


def test_sample_tiles_respects_column_ranges_and_masks():
    img = np.tile(np.arange(100, dtype=np.float32), (40, 1))
    mask = img > 50
    rng = np.random.default_rng(0)
    tiles, m = sample_tiles([img], 16, 50, rng, masks=[mask], column_ranges=[(0, 60)])
    assert tiles.shape == (50, 16, 16) and tiles.max() < 60
    np.testing.assert_array_equal(m, tiles > 50)
    g = grid_tiles(img, 16)
    assert g.shape == (2 * 6, 16, 16)
    np.testing.assert_array_equal(g[1], img[:16, 16:32])


def test_real_epu_micrograph(shared_data):
    rm = prepare_real_micrograph(shared_data / "micrographs" / "epu2.9_example.mrc", 0.66655135 * 4)
    assert rm.source_dtype == "uint16" and rm.source_shape == (4096, 4096)
    assert rm.image.shape == (1024, 1024)
    assert abs(rm.pixel_size_A - 4 * 0.66655135) < 1e-3
    assert np.isfinite(rm.image).all() and abs(rm.image.std() - 1) < 1e-3
