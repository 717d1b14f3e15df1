"""Particle sets (genem.io.particles): STAR with optics groups, cryoSPARC .cs, bare .mrcs; path resolution, the
pixel-size rules, and write-back that keeps every other column."""
import numpy as np
import pandas as pd
import pytest

from genem.io import (
    GenemInputError, header_pixel_size_A, image_files, read_micrograph_table, read_mrc, read_particle_set,
    read_star, star_pixel_sizes_A, write_mrc, write_particle_table, write_star,
)
from genem.io.star import MICROGRAPH_PIXEL_SIZE_COLUMNS


def _stack(path, n, box=16, px=2.0, seed=0):
    data = np.random.default_rng(seed).normal(size=(n, box, box)).astype(np.float32)
    write_mrc(path, data, px)
    return data


@pytest.fixture
def project(tmp_path):
    """A RELION-like project: stacks under Extract/job007/Movies, the STAR in Select/job009 (paths relative to
    the project directory), two optics groups with different pixel sizes."""
    root = tmp_path / "proj"
    a = _stack(root / "Extract" / "job007" / "Movies" / "a.mrcs", 4, seed=1)
    b = _stack(root / "Extract" / "job007" / "Movies" / "b.mrcs", 3, seed=2)
    optics = pd.DataFrame({"rlnOpticsGroupName": ["g1", "g2"], "rlnOpticsGroup": [1, 2],
                           "rlnImagePixelSize": [2.0, 2.5], "rlnImageSize": [16, 16], "rlnVoltage": [300.0, 200.0]})
    names = [f"{i:06d}@Extract/job007/Movies/{f}.mrcs" for f, i in
             [("b", 3), ("a", 1), ("a", 4), ("b", 1), ("a", 2)]]
    parts = pd.DataFrame({"rlnImageName": names, "rlnOpticsGroup": [2, 1, 1, 2, 1],
                          "rlnDefocusU": [1e4, 1.1e4, 1.2e4, 1.3e4, 1.4e4], "rlnClassNumber": [1, 2, 3, 4, 5],
                          "rlnMicrographName": ["m.mrc"] * 5})
    star = root / "Select" / "job009" / "particles.star"
    write_star(star, {"optics": optics, "particles": parts})
    return root, star, {"a": a, "b": b}


def test_star_with_optics_groups(project):
    root, star, data = project
    ps = read_particle_set(star)
    assert ps.kind == "star" and ps.root == root.resolve() and ps.box_px == 16
    assert [s.name for s in ps.stacks] == ["b.mrcs", "a.mrcs"]  # first-seen order
    np.testing.assert_array_equal(ps.index_of_row, [2, 0, 3, 0, 1])
    np.testing.assert_allclose(ps.pixel_size_A, [2.5, 2.0, 2.0, 2.5, 2.0])
    np.testing.assert_array_equal(ps.rows_of_stack(1), [1, 2, 4])
    assert ps.stack_pixel_size_A(1) == 2.0 and ps.stack_pixel_size_A(0) == 2.5
    np.testing.assert_array_equal(ps.read_images(1, ps.rows_of_stack(1)), data["a"][[0, 3, 1]])
    assert read_particle_set(star, root=root).root == root
    assert np.all(read_particle_set(star, pixel_size_A=3.0).pixel_size_A == 3.0)
    assert image_files(ps.table["particles"]) == ["Extract/job007/Movies/b.mrcs", "Extract/job007/Movies/a.mrcs"]


def test_star_write_back_keeps_every_column(project, tmp_path):
    _, star, _ = project
    ps = read_particle_set(star)
    out = write_particle_table(ps, tmp_path / "out" / "p.star", [f"D/{k}.mrcs" for k in range(5)], np.arange(5))
    inp, got = read_star(star), read_star(out)
    assert list(got) == list(inp)
    pd.testing.assert_frame_equal(got["optics"], inp["optics"])
    pd.testing.assert_frame_equal(got["particles"].drop(columns="rlnImageName"),
                                  inp["particles"].drop(columns="rlnImageName"))
    assert list(got["particles"]["rlnImageName"]) == [f"{k + 1:06d}@D/{k}.mrcs" for k in range(5)]
    assert list(ps.table["particles"]["rlnImageName"]) == list(inp["particles"]["rlnImageName"])  # input untouched


def test_star_errors_are_one_line(project, tmp_path):
    root, star, _ = project
    blocks = read_star(star)

    def bad(parts, optics=blocks["optics"]):
        p = root / "Select" / "bad.star"
        write_star(p, {"optics": optics, "particles": parts})
        with pytest.raises(GenemInputError) as e:
            read_particle_set(p)
        assert "\n" not in str(e.value)
        return str(e.value)

    parts = blocks["particles"]
    assert "out of range" in bad(parts.assign(rlnImageName=parts["rlnImageName"].str.replace("000003@", "000009@")))
    assert "not found" in bad(parts.assign(rlnImageName="000001@Nowhere/x.mrcs"))
    _stack(root / "Extract" / "big.mrcs", 2, box=20)
    big = parts.copy()
    big.loc[0, "rlnImageName"] = "000001@Extract/big.mrcs"
    assert "box sizes differ" in bad(big)
    assert "pixel size" in bad(parts, blocks["optics"].drop(columns="rlnImagePixelSize"))
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(GenemInputError, match="unsupported"):
        read_particle_set(tmp_path / "x.txt")


def test_cs_particles(project, tmp_path):
    from cryosparc.dataset import Dataset

    root, _, data = project
    n = 4
    ds = Dataset.allocate(n, [("blob/path", "O"), ("blob/idx", "u4"), ("blob/shape", "u4", (2,)),
                              ("blob/psize_A", "f4"), ("ctf/df1_A", "f4"), ("alignments3D/pose", "f4", (3,))])
    ds["blob/path"] = np.array(["Extract/job007/Movies/a.mrcs"] * 3 + ["Extract/job007/Movies/b.mrcs"], dtype=object)
    ds["blob/idx"] = np.array([3, 0, 2, 1], dtype=np.uint32)
    ds["blob/shape"], ds["blob/psize_A"] = 16, 2.0
    ds["ctf/df1_A"] = [1e4, 2e4, 3e4, 4e4]
    ds["alignments3D/pose"] = np.arange(3 * n, dtype=np.float32).reshape(n, 3)
    cs = root / "J3" / "particles.cs"
    cs.parent.mkdir(parents=True)
    ds.save(str(cs))
    ps = read_particle_set(cs)
    assert ps.kind == "cs" and ps.root == root.resolve() and ps.box_px == 16
    np.testing.assert_allclose(ps.pixel_size_A, 2.0)
    np.testing.assert_array_equal(ps.read_images(0, ps.rows_of_stack(0)), data["a"][[3, 0, 2]])
    out = write_particle_table(ps, tmp_path / "o" / "p.cs", ["D/a.mrcs"] * 3 + ["D/b.mrcs"], np.array([0, 1, 2, 0]))
    got = Dataset.load(str(out))
    assert set(got.fields()) == set(ds.fields()) and len(got) == n
    for f in ("uid", "ctf/df1_A", "alignments3D/pose", "blob/shape", "blob/psize_A"):
        np.testing.assert_array_equal(got[f], ds[f])
    assert [str(p) for p in got["blob/path"]] == ["D/a.mrcs"] * 3 + ["D/b.mrcs"]
    assert list(got["blob/idx"]) == [0, 1, 2, 0]
    # '>' paths (relative to the .cs folder, as in an exported result group) and a missing pixel size
    ds2 = ds.drop_fields(["blob/psize_A"])
    ds2["blob/path"] = np.array([">../Extract/job007/Movies/a.mrcs"] * n, dtype=object)
    ds2["blob/idx"] = np.array([0, 1, 2, 3], dtype=np.uint32)
    ds2.save(str(root / "J3" / "exported.cs"))
    with pytest.raises(GenemInputError, match="blob/psize_A"):
        read_particle_set(root / "J3" / "exported.cs")
    ps2 = read_particle_set(root / "J3" / "exported.cs", pixel_size_A=2.0)
    assert ps2.stacks[0].resolve() == (root / "Extract" / "job007" / "Movies" / "a.mrcs").resolve()


def test_bare_stack_and_the_unknown_header_pixel_size(tmp_path):
    _stack(tmp_path / "s.mrcs", 5, px=1.0)
    with pytest.raises(GenemInputError, match="no pixel size"):
        read_particle_set(tmp_path / "s.mrcs")
    ps = read_particle_set(tmp_path / "s.mrcs", pixel_size_A=1.0)  # an explicit 1.0 is taken as given
    assert ps.kind == "mrcs" and ps.box_px == 16 and np.all(ps.pixel_size_A == 1.0)
    np.testing.assert_array_equal(ps.index_of_row, np.arange(5))
    with pytest.raises(ValueError):
        write_particle_table(ps, tmp_path / "x.star", [], np.arange(5))
    _stack(tmp_path / "t.mrcs", 2, px=2.5)
    assert np.all(read_particle_set(tmp_path / "t.mrcs").pixel_size_A == 2.5)
    assert read_mrc(tmp_path / "s.mrcs")[1] is None and read_mrc(tmp_path / "t.mrcs")[1] == pytest.approx(2.5)
    assert header_pixel_size_A(1.0) is None and header_pixel_size_A(0.0) is None
    assert header_pixel_size_A(1.0 + 1e-3) == pytest.approx(1.001) and header_pixel_size_A(0.85) == 0.85


def test_star_pixel_size_rule():
    optics = pd.DataFrame({"rlnOpticsGroup": [1, 2], "rlnImagePixelSize": [1.5, 2.0],
                           "rlnMicrographPixelSize": [0.75, 1.0]})
    rows = pd.DataFrame({"rlnOpticsGroup": [2, 1, 3]})
    np.testing.assert_allclose(star_pixel_sizes_A(optics, rows), [2.0, 1.5, np.nan])  # group 3 is unknown
    np.testing.assert_allclose(star_pixel_sizes_A(optics, rows, MICROGRAPH_PIXEL_SIZE_COLUMNS), [1.0, 0.75, np.nan])
    np.testing.assert_allclose(star_pixel_sizes_A(optics, rows.assign(rlnImagePixelSize=3.0)), 3.0)  # row wins
    np.testing.assert_allclose(star_pixel_sizes_A(optics, pd.DataFrame({"x": [0, 0]})), 1.5)  # no groups: first
    relion30 = pd.DataFrame({"rlnDetectorPixelSize": [5.0], "rlnMagnification": [50000.0]})
    np.testing.assert_allclose(star_pixel_sizes_A(None, relion30), 1.0)
    np.testing.assert_allclose(star_pixel_sizes_A(None, pd.DataFrame({"rlnPixelSize": [1.2]})), 1.2)
    assert np.isnan(star_pixel_sizes_A(None, pd.DataFrame({"x": [0]}))).all()


def test_micrograph_table(tmp_path):
    write_mrc(tmp_path / "Micrographs" / "m1.mrc", np.zeros((8, 12), np.float32), 1.0)
    write_mrc(tmp_path / "Micrographs" / "m2.mrc", np.zeros((8, 12), np.float32), 1.0)
    optics = pd.DataFrame({"rlnOpticsGroup": [1, 2], "rlnMicrographPixelSize": [0.8, 1.1]})
    mics = pd.DataFrame({"rlnMicrographName": ["Micrographs/m1.mrc", "Micrographs/m2.mrc"],
                         "rlnOpticsGroup": [2, 7], "rlnCtfMaxResolution": [3.5, 4.0]})
    write_star(tmp_path / "sub" / "mics.star", {"optics": optics, "micrographs": mics})
    t = read_micrograph_table(tmp_path / "sub" / "mics.star")
    assert t.root == tmp_path.resolve() and t.names == list(mics["rlnMicrographName"])
    assert t.pixel_size_A == [1.1, None]  # group 7 has none: the MRC header's counts (here 1.0: unknown)
    assert read_micrograph_table(tmp_path / "sub" / "mics.star", pixel_size_A=2.0).pixel_size_A == [2.0, 2.0]
    blocks = t.with_names(["D/a.mrc", "D/b.mrc"])
    pd.testing.assert_frame_equal(blocks["micrographs"].drop(columns="rlnMicrographName"),
                                  mics.drop(columns="rlnMicrographName"))
    assert list(blocks["micrographs"]["rlnMicrographName"]) == ["D/a.mrc", "D/b.mrc"]
    assert list(t.blocks["micrographs"]["rlnMicrographName"]) == list(mics["rlnMicrographName"])
