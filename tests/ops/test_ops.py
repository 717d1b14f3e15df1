"""genem.ops: Fourier resampling, RELION background normalisation, tiling with blending, radial power spectra."""
import subprocess

import mrcfile
import numpy as np
import pytest
import torch
from _support import requires_relion

from genem.ops import (background_mask_2d, background_stats_2d, blend_tiles_2d, blend_window_1d,
                       normalize_background_2d, normalize_background_pair_2d, normalize_image_2d, pad_reflect_2d,
                       radial_average_2d, radial_power_spectrum_2d, resample_fourier_2d, resample_fourier_3d,
                       tile_starts_1d)


def _band_limited(shape, k_max, seed=0, lead=()):
    """Real images (lead..., *shape) with random Fourier coefficients only at |k_i| <= k_max[i] (cycles per box)."""
    g = torch.Generator().manual_seed(seed)
    spec = torch.zeros(lead + tuple(shape), dtype=torch.complex128)
    grids = torch.meshgrid(*[torch.fft.fftfreq(n, dtype=torch.float64) * n for n in shape], indexing="ij")
    keep = torch.ones(shape, dtype=torch.bool)
    for k, km in zip(grids, k_max):
        keep &= k.abs() <= km
    spec[..., keep] = torch.complex(torch.randn(lead + (int(keep.sum()),), generator=g, dtype=torch.float64),
                                    torch.randn(lead + (int(keep.sum()),), generator=g, dtype=torch.float64))
    return torch.fft.ifftn(spec, dim=tuple(range(-len(shape), 0))).real * float(np.prod(shape))


# ------------------------------------------------------------------------------------------------ resampling
@pytest.mark.parametrize("shape,small", [((64, 64), (40, 40)), ((63, 63), (48, 48)), ((64, 80), (49, 57)),
                                         ((101, 77), (50, 39))])
@pytest.mark.parametrize("centered", [True, False])
def test_down_then_up_of_a_band_limited_image_is_exact(shape, small, centered):
    x = _band_limited(shape, [min(small) // 2 - 1] * 2, lead=(2, 3))
    down = resample_fourier_2d(x, small, centered=centered)
    assert down.shape == (2, 3) + small and down.dtype == torch.float64
    back = resample_fourier_2d(down, shape, centered=centered)
    assert torch.allclose(back, x, atol=1e-10 * x.abs().max())
    # pixel values are kept (not sums): the mean and the mean power of a band-limited image do not change
    assert torch.allclose(down.mean((-2, -1)), x.mean((-2, -1)), atol=1e-10)
    assert torch.allclose((down ** 2).mean((-2, -1)), (x ** 2).mean((-2, -1)), rtol=1e-10)
    # batch dimensions: one image at a time gives the same
    assert torch.allclose(resample_fourier_2d(x[1, 2], small, centered=centered), down[1, 2], atol=1e-12)


def test_downsampling_samples_the_band_limited_function_and_drops_higher_frequencies():
    n, m = 96, 48
    y, x = np.mgrid[0:n, 0:n]
    img = 3 + np.cos(2 * np.pi * (5 * x + 3 * y) / n) + 0.5 * np.sin(2 * np.pi * 11 * y / n)
    out = resample_fourier_2d(img.astype(np.float32), (m, m), centered=False)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    ys, xs = np.mgrid[0:m, 0:m] * (n / m)
    np.testing.assert_allclose(out, 3 + np.cos(2 * np.pi * (5 * xs + 3 * ys) / n)
                               + 0.5 * np.sin(2 * np.pi * 11 * ys / n), atol=1e-5)
    high = np.cos(2 * np.pi * 30 * x / n)  # 30 cycles > 24, the new Nyquist
    assert np.abs(resample_fourier_2d(high, (m, m), centered=False)).max() < 1e-10


@pytest.mark.parametrize("n,m", [(64, 40), (64, 41), (63, 40), (63, 95), (64, 96)])
def test_centered_keeps_the_box_centre_and_corner_keeps_pixel_zero(n, m):
    r2 = lambda c: sum((torch.arange(n, dtype=torch.float64)[s] - c) ** 2 for s in  # noqa: E731
                       [(slice(None), None), (None, slice(None))])
    blob = torch.exp(-r2(n // 2) / (2 * 4.0 ** 2))
    small = resample_fourier_2d(blob, m)
    assert int(small.argmax()) == (m // 2) * m + m // 2
    idx = torch.arange(n, dtype=torch.float64)
    d = torch.minimum(idx, n - idx)  # periodic distance to pixel 0
    corner = torch.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * 4.0 ** 2))
    assert int(resample_fourier_2d(corner, m, centered=False).argmax()) == 0


def test_resample_3d_down_then_up_and_identity():
    v = _band_limited((32, 32, 32), [9, 9, 9])
    back = resample_fourier_3d(resample_fourier_3d(v, 21), 32)
    assert torch.allclose(back, v, atol=1e-10 * v.abs().max())
    a = np.ones((8, 8, 8), np.float32)
    assert resample_fourier_3d(a, 8) is a


# ------------------------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize("shape", [(64, 64), (63, 63), (48, 70)])
def test_background_is_mean_0_sd_1_under_the_documented_mask(shape):
    h, w = shape
    g = torch.Generator().manual_seed(0)
    img = 5 + 3 * torch.randn((4,) + shape, generator=g, dtype=torch.float64)
    img[:, h // 2 - 5:h // 2 + 5, w // 2 - 5:w // 2 + 5] += 40  # a "particle" that must not count
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.hypot(yy - h // 2, xx - w // 2) > 0.375 * min(h, w)  # 75 % of the half box, centre at N//2
    assert np.array_equal(background_mask_2d(shape).numpy(), mask)
    n, mean, sd = normalize_background_2d(img)
    bg = n.numpy()[:, mask]
    np.testing.assert_allclose(bg.mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(bg.std(1), 1, rtol=1e-12)  # population sd, as RELION
    assert torch.allclose(n * sd + mean, img)
    # numpy in, numpy out, same numbers
    nn_, _, _ = normalize_background_2d(img.numpy())
    assert isinstance(nn_, np.ndarray) and np.allclose(nn_, n.numpy(), atol=1e-12)


def test_flat_background_is_only_shifted_and_pairs_share_the_noisy_scale():
    m, s = background_stats_2d(np.full((2, 16, 16), 3.0, np.float32))
    assert np.all(m == 3.0) and np.all(s == 1.0)
    g = torch.Generator().manual_seed(1)
    clean = torch.randn(3, 32, 32, generator=g)
    noisy = 2 * clean + 5 * torch.randn(3, 32, 32, generator=g) + 7
    n, c = normalize_background_pair_2d(noisy, 2 * clean + 1)
    _, sd = background_stats_2d(noisy)
    cm, _ = background_stats_2d(2 * clean + 1)
    assert torch.allclose(c, (2 * clean + 1 - cm) / sd)
    assert torch.allclose(background_stats_2d(n)[1], torch.ones(3, 1, 1), atol=1e-5)


def test_whole_image_normalisation():
    x = np.random.default_rng(3).normal(4, 3, (5, 30, 41)).astype(np.float32)
    n, mean, sd = normalize_image_2d(x)
    assert n.dtype == np.float32 and mean.shape == (5, 1, 1)
    np.testing.assert_allclose(n.mean((-2, -1)), 0, atol=1e-6)
    np.testing.assert_allclose(n.std((-2, -1)), 1, rtol=1e-6)
    nt, _, _ = normalize_image_2d(torch.from_numpy(x))
    assert nt.dtype == torch.float32 and np.allclose(nt.numpy(), n, atol=1e-6)
    assert np.array_equal(normalize_image_2d(np.full((4, 4), 2.0))[0], np.zeros((4, 4)))


@requires_relion
def test_normalisation_matches_relion_preprocess(tmp_path):
    x = np.random.default_rng(0).normal(3, 2, (3, 64, 64)).astype(np.float32)
    with mrcfile.new(tmp_path / "in.mrcs") as f:
        f.set_data(x)
    subprocess.run(["relion_preprocess", "--operate_on", "in.mrcs", "--operate_out", "out.mrcs", "--norm",
                    "--no_ramp", "--bg_radius", "24"], cwd=tmp_path, check=True, capture_output=True)
    ref = mrcfile.read(tmp_path / "out.mrcs")
    np.testing.assert_allclose(normalize_background_2d(x)[0], ref, atol=1e-5)  # default radius 0.375 * 64 = 24


# ------------------------------------------------------------------------------------------------- tiling
@pytest.mark.parametrize("ramp", ["cosine", "linear"])
def test_blend_windows_cross_fade_to_a_partition_of_unity(ramp):
    tile, context, blend = 40, 6, 8
    w = blend_window_1d(tile, context, blend, ramp=ramp)
    assert w[:context].eq(0).all() and w[context + blend:tile - context - blend].eq(1).all()
    assert torch.allclose(w, w.flip(0))
    step = tile - 2 * context - blend
    total = torch.zeros(step * 6 + tile, dtype=torch.float64)
    for s in tile_starts_1d(len(total), tile, step):
        total[s:s + tile] += w
    # wherever a tile is trusted (past the first tile's context and ramp), the windows sum to exactly 1
    assert torch.allclose(total[context + blend:-(context + blend)], torch.ones(1, dtype=torch.float64))
    with pytest.raises(ValueError):
        blend_window_1d(20, 6, 4)


@pytest.mark.parametrize("shape", [(150, 203), (37, 300), (64, 64), (9, 30)])
def test_tiling_a_pointwise_op_reproduces_it_exactly(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    cosine = blend_window_1d(48, 8, 8)
    linear = blend_window_1d(48, 0, 8, ramp="linear")
    for win, pad, step in ((cosine, 16, 24), (linear, 0, 32)):
        for fn, ref in ((lambda t: t, x), (lambda t: t ** 2 - 1, x ** 2 - 1)):
            out = blend_tiles_2d(fn, x, tile_hw=(48, 48), step_hw=(step, step), window_hw=(win, win), pad_px=pad,
                                 batch_size=3)
            assert out.shape == x.shape and out.dtype == x.dtype
            assert torch.allclose(out, ref, atol=1e-5)
    out = blend_tiles_2d(lambda t: t, x.numpy(), tile_hw=(48, 48), step_hw=(24, 24), window_hw=(cosine, cosine),
                         pad_px=16)
    assert isinstance(out, np.ndarray) and np.allclose(out, x.numpy(), atol=1e-6)


def test_reflect_padding_is_numpys_for_any_size():
    for n in (1, 2, 3, 7):
        x = np.arange(3 * n, dtype=np.float32).reshape(3, n)
        for pad in ((0, 0), (2, 9), (11, 3)):
            ref = np.pad(x, ((1, 4), pad), mode="reflect")
            assert np.array_equal(pad_reflect_2d(torch.from_numpy(x), ((1, 4), pad)).numpy(), ref)


# ---------------------------------------------------------------------------------------- power spectrum
@pytest.mark.parametrize("shape", [(64, 64), (48, 80), (63, 63)])
def test_radial_power_spectrum_of_white_noise_is_flat(shape):
    x = 2 * torch.randn((200,) + shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ps = radial_power_spectrum_2d(x).mean(0)
    assert ps.shape == (min(shape) // 2 + 1,)
    assert torch.allclose(ps[1:], torch.full_like(ps[1:], 4.0), rtol=0.1)  # variance 4 at every ring
    assert ps[1:].mean().item() == pytest.approx(4.0, rel=0.01)
    np.testing.assert_allclose(radial_power_spectrum_2d(x[:3].numpy()), radial_power_spectrum_2d(x[:3]).numpy())


def test_radial_average_returns_the_profile_of_a_radial_function():
    y, x = np.mgrid[:32, :40] - np.array([16, 20])[:, None, None]
    r = np.hypot(x * 32 / 40, y)  # rings are in units of the shorter side's frequency step
    prof = radial_average_2d(torch.tensor(r), centered=True)
    assert prof.shape == (17,)
    assert np.allclose(prof.numpy()[1:15], np.arange(1, 15), atol=0.25)


def test_robust_location_scale_ignores_outliers_and_matches_gaussian_sd():
    from genem.ops import robust_location_scale

    x = np.random.default_rng(0).normal(3.0, 2.0, 200_000)
    x[:500] = 1e6  # specks
    med, scale = robust_location_scale(x)
    assert med == pytest.approx(3.0, abs=0.02) and scale == pytest.approx(2.0, rel=0.02)
    assert robust_location_scale(np.zeros(10)) == (0.0, 0.0)


def test_background_trend_recovers_a_quadratic_and_ignores_noise():
    from genem.ops import fit_background_trend_2d

    h, w = 300, 420
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    trend = 0.5 + 0.3 * xx - 0.2 * yy + 0.1 * xx * yy + 0.25 * xx ** 2 - 0.15 * yy ** 2
    np.testing.assert_allclose(fit_background_trend_2d(trend), trend, atol=1e-4)  # block means of x^2: tiny offset
    noise = np.random.default_rng(0).normal(size=(h, w))
    assert np.abs(fit_background_trend_2d(trend + noise) - trend).max() < 0.05
    assert fit_background_trend_2d(noise).std() < 0.02
