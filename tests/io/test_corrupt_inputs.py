"""Corrupt metadata values and damaged files give one line naming the file and the problem (row, column, bytes),
and no warning from the MRC library leaks before it."""
import warnings

import numpy as np
import pandas as pd
import pytest

from genem.io import GenemInputError, read_mrc, read_particle_ctf_table, read_particle_set, read_star, write_mrc, write_star
from genem.io.cs import read_cs, write_cs
from genem.io.mrc import read_stack_images, read_stack_shape


@pytest.fixture
def star(tmp_path):
    write_mrc(tmp_path / "a.mrcs", np.random.default_rng(0).normal(size=(4, 16, 16)).astype(np.float32), 2.0)
    optics = pd.DataFrame({"rlnOpticsGroupName": ["g1"], "rlnOpticsGroup": [1], "rlnImagePixelSize": [2.0],
                           "rlnImageSize": [16], "rlnVoltage": [300.0], "rlnSphericalAberration": [2.7],
                           "rlnAmplitudeContrast": [0.1]})
    parts = pd.DataFrame({"rlnImageName": [f"{i:06d}@a.mrcs" for i in range(1, 5)], "rlnOpticsGroup": [1] * 4,
                          "rlnDefocusU": [1.0e4, 1.1e4, 1.2e4, 1.3e4], "rlnDefocusV": [1.0e4] * 4,
                          "rlnDefocusAngle": [5.0] * 4})
    path = tmp_path / "p.star"
    write_star(path, {"optics": optics, "particles": parts})
    return path


def _error(fn, path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning that leaks is a failure
        with pytest.raises(GenemInputError) as e:
            fn(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


@pytest.mark.parametrize("reader", [read_particle_set, read_particle_ctf_table, read_star])
def test_star_last_row_cut_off(star, reader):
    text = star.read_text().rstrip("\n")
    cut = star.with_name("cut.star")
    cut.write_text(text[: text.rindex("\t")])  # the last value of the last row never written
    msg = _error(reader, cut)
    assert "row 4" in msg and "rlnDefocusAngle" in msg and "truncated" in msg


@pytest.mark.parametrize("reader", [read_particle_set, read_particle_ctf_table, read_star])
def test_star_non_numeric_value(star, reader):
    bad = star.with_name("bad.star")
    bad.write_text(star.read_text().replace("11000.000000", "11OOO.000000"))
    msg = _error(reader, bad)
    assert "row 2" in msg and "rlnDefocusU" in msg and "'11OOO.000000'" in msg


def test_star_blank_optics_group(star):
    lines = star.read_text().splitlines()
    k = next(i for i, s in enumerate(lines) if s.startswith("000003@"))
    f = lines[k].split("\t")
    lines[k] = "\t".join([f[0], '""'] + f[2:])  # an empty quoted value
    bad = star.with_name("blank.star")
    bad.write_text("\n".join(lines) + "\n")
    for reader in (read_particle_set, read_particle_ctf_table):
        msg = _error(reader, bad)
        assert "row 3" in msg and "rlnOpticsGroup" in msg


def test_star_unknown_optics_group(star):
    bad = star.with_name("group.star")
    lines = star.read_text().splitlines()
    k = next(i for i, s in enumerate(lines) if s.startswith("000002@"))
    lines[k] = lines[k].replace("\t1\t", "\t7\t", 1)
    bad.write_text("\n".join(lines) + "\n")
    msg = _error(read_particle_set, bad)
    assert "row 2" in msg and "optics group 7" in msg


def test_star_parse_error_is_specific(tmp_path):
    p = tmp_path / "x.star"
    p.write_text("data_particles\n\nloop_\n_rlnA #1\n_rlnB #2\n1 2\n3 4 5 6\n")
    msg = _error(read_star, p)
    assert "(ParserError)" not in msg and "line" in msg


def test_truncated_mrc_says_how_many_bytes(tmp_path):
    write_mrc(tmp_path / "a.mrcs", np.ones((4, 16, 16), np.float32), 2.0)
    raw = (tmp_path / "a.mrcs").read_bytes()
    cut = tmp_path / "cut.mrcs"
    cut.write_bytes(raw[: 1024 + 2 * 16 * 16 * 4 + 7])
    for reader in (read_mrc, read_stack_shape, lambda p: read_stack_images(p, [0]), read_particle_set):
        msg = _error(reader, cut)
        assert "truncated" in msg and "4096" in msg and str(2 * 16 * 16 * 4 + 7) in msg, msg
    short = tmp_path / "short.mrc"
    short.write_bytes(raw[:500])
    assert "truncated" in _error(read_mrc, short) and "500" in _error(read_stack_shape, short)
    junk = tmp_path / "junk.mrc"
    junk.write_bytes(b"garbage" * 300)
    for reader in (read_mrc, read_stack_shape):
        msg = _error(reader, junk)
        assert "not a readable MRC file (no 'MAP' identifier" in msg and "AttributeError" not in msg


def test_damaged_cs_says_what(tmp_path):
    from cryosparc.dataset import Dataset

    ds = Dataset.allocate(50, [("blob/idx", "<u4"), ("blob/psize_A", "<f4")])
    write_cs(tmp_path / "a.cs", ds)
    raw = (tmp_path / "a.cs").read_bytes()
    cut = tmp_path / "cut.cs"
    cut.write_bytes(raw[:-20])
    msg = _error(read_cs, cut)
    assert "truncated" in msg and f"expected {len(raw)} bytes, got {len(raw) - 20}" in msg
    junk = tmp_path / "junk.cs"
    junk.write_bytes(b"junk" * 10)
    msg = _error(read_cs, junk)
    assert "DatasetLoadError" not in msg and "no NumPy or cryoSPARC header" in msg


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_pixels_are_refused_by_every_image_reader(tmp_path, value):
    from PIL import Image

    from genem.io.images import read_image
    from genem.translate.data import read_micrograph_any

    img = np.zeros((4, 32, 32), np.float32)
    img[2, 5, 7] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mrcfile warns when it writes NaN
        write_mrc(tmp_path / "s.mrcs", img, 2.0)
        write_mrc(tmp_path / "m.mrc", img[2], 2.0)
    Image.fromarray(img[2]).save(tmp_path / "m.tif")
    for reader, path in [(read_mrc, "s.mrcs"), (lambda p: read_stack_images(p, [2]), "s.mrcs"),
                         (read_particle_set, "s.mrcs"), (read_image, "m.tif"), (read_image, "m.mrc"),
                         (read_micrograph_any, "m.mrc")]:
        if reader is read_particle_set:
            ps = read_particle_set(tmp_path / path)
            reader, path = (lambda p: ps.read_images(0, np.arange(4))), path
        assert "NaN or infinite" in _error(reader, tmp_path / path)


def test_star_column_named_twice_is_a_clean_error(tmp_path):
    from genem.io import read_star

    p = tmp_path / "twice.star"
    p.write_text("data_micrographs\n\nloop_\n_rlnMicrographName #1\n_rlnDefocusU #2\n_rlnDefocusU #3\n"
                 "a.mrc 1000 x\n")
    with pytest.raises(GenemInputError, match="rlnDefocusU appears more than once"):
        read_star(p)


def test_star_non_finite_numbers_as_relion_writes_them(tmp_path):
    """RELION writes nan / -nan / inf in numeric columns (an empty class's completeness in a _model.star): they are
    numbers, not a corrupt value; a word among numbers still is."""
    path = tmp_path / "model.star"
    path.write_text("\ndata_model_classes\n\nloop_\n_rlnReferenceImage #1\n_rlnOverallFourierCompleteness #2\n"
                    "1@c.mrcs 0.95\n2@c.mrcs -nan\n3@c.mrcs inf\n\n")
    col = read_star(path)["model_classes"]["rlnOverallFourierCompleteness"]
    assert pd.api.types.is_float_dtype(col) and col[0] == 0.95 and np.isnan(col[1]) and np.isinf(col[2])
    path.write_text(path.read_text().replace("inf", "abc"))
    assert "row 3, column rlnOverallFourierCompleteness: 'abc' is not a number" in _error(read_star, path)
