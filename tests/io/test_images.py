"""genem.io.images: one reader for micrographs as they come (MRC of any dtype, 8-bit PNG/TIFF renders), used by
picking and by translation's real micrographs."""
import numpy as np
import pytest
from PIL import Image

from genem.io import GenemInputError, write_mrc
from genem.io.images import read_image, stored_dtype
from genem.translate.data import prepare_real_micrograph


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_raster_reads_as_float_without_pixel_size(tmp_path, suffix):
    pix = np.random.default_rng(0).integers(0, 256, (40, 56), dtype=np.uint8)
    Image.fromarray(pix).save(tmp_path / f"m{suffix}")
    img, px = read_image(tmp_path / f"m{suffix}")
    assert img.dtype == np.float32 and img.shape == (40, 56) and px is None
    np.testing.assert_array_equal(img, pix.astype(np.float32))
    assert stored_dtype(tmp_path / f"m{suffix}") == "uint8"


def test_rgb_render_becomes_grey_and_mrc_keeps_header(tmp_path):
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(tmp_path / "c.png")
    img, _ = read_image(tmp_path / "c.png")
    assert img.shape == (20, 30) and np.allclose(img, 90)
    data = np.random.default_rng(1).integers(0, 4000, (1, 24, 32)).astype(np.uint16)
    write_mrc(tmp_path / "m.mrc", data, 1.3, dtype=np.uint16)
    img, px = read_image(tmp_path / "m.mrc")
    assert img.shape == (24, 32) and px == pytest.approx(1.3) and stored_dtype(tmp_path / "m.mrc") == "uint16"
    np.testing.assert_array_equal(img, data[0].astype(np.float32))


def test_bad_images_are_one_line_errors(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(GenemInputError, match="bad.png: not a readable image"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(GenemInputError, match="file not found"):
        read_image(tmp_path / "missing.tif")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(GenemInputError, match="unknown micrograph format"):
        read_image(tmp_path / "x.txt")
    write_mrc(tmp_path / "stack.mrcs", np.zeros((3, 20, 20), np.float32), 2.0)
    with pytest.raises(GenemInputError, match="not a single 2D micrograph"):
        read_image(tmp_path / "stack.mrcs")


def test_translation_reads_png_renders_with_a_given_pixel_size(tmp_path):
    pix = np.random.default_rng(2).integers(60, 140, (64, 64), dtype=np.uint8)
    Image.fromarray(pix).save(tmp_path / "r.png")
    with pytest.raises(GenemInputError, match="pixel size unknown"):
        prepare_real_micrograph(tmp_path / "r.png", 4.0)
    rm = prepare_real_micrograph(tmp_path / "r.png", 4.0, pixel_size_A=2.0)
    assert rm.image.shape == (32, 32) and rm.source_dtype == "uint8" and rm.source_pixel_size_A == 2.0
    assert abs(float(rm.image.mean())) < 1e-4 and rm.image.std() == pytest.approx(1.0, abs=1e-3)
