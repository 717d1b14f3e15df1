"""A user's first ``genem simulate`` with their own structure: defaults that fit any structure (count and box),
maps whose pixel size would blow up memory refused with the numbers, ground truth at the particle box, a preview
that shows what was made, and range flags that take negative values."""
import json

import mrcfile
import numpy as np
import pytest

from genem.io import GenemInputError, write_mrc
from genem.simulate import SimulationConfig, StructureSpec, resolve_config, run_simulation
from genem.simulate.structures import load_potential

SMALL = dict(n_micrographs=1, micrograph_size_px=(192, 192), pixel_size_A=4.0, noise_mode="snr", snr=1.0, ice="none",
             defocus_A=(15000.0, 15000.0), astigmatism_A=0.0)


def _blob_map(path, n=32, radius_px=8.0, voxel=(3.0, 3.0, 3.0)):
    c = np.arange(n) - n // 2
    r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    vol = ((r < radius_px) + 0.2 * (np.abs(c)[None, None, :] < 2) * (r < radius_px + 3)).astype(np.float32)
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(vol)
        m.voxel_size = voxel
    return path


# ------------------------------------------------------------------------------------------------ item 5
@pytest.mark.parametrize("px", [float("inf"), float("nan"), -2.0, 0.0])
def test_map_pixel_size_must_be_finite_and_positive(tmp_path, px):
    path = _blob_map(tmp_path / "m.mrc")
    with pytest.raises(GenemInputError, match="pixel size"):
        load_potential(path, 4.0, map_pixel_size_A=px)


@pytest.mark.parametrize("px", [float("inf"), float("nan")])
def test_simulation_pixel_size_must_be_finite(px):
    with pytest.raises(GenemInputError, match="pixel_size_A"):
        SimulationConfig(pixel_size_A=px)


def test_anisotropic_voxels_are_refused(tmp_path):
    path = _blob_map(tmp_path / "m.mrc", voxel=(3.0, 3.0, 4.5))
    with pytest.raises(GenemInputError, match="anisotropic") as e:
        load_potential(path, 4.0)
    assert "3 x 3 x 4.5" in str(e.value)
    assert load_potential(path, 4.0, map_pixel_size_A=3.0).volume_V.shape == (24, 24, 24)  # an explicit size wins


def test_a_pixel_size_typo_is_refused_before_allocating(tmp_path):
    """--map-pixel-size-A 40 on a 65^3 map: a 1734^3 resampled map. Refused with the numbers, nothing allocated."""
    path = _blob_map(tmp_path / "m.mrc", n=65)
    with pytest.raises(GenemInputError) as e:
        load_potential(path, 1.5, map_pixel_size_A=40.0)
    msg = str(e.value)
    assert "2600 A" in msg and "1734" in msg and "GiB" in msg and "\n" not in msg


def test_nan_pixels_in_a_map(tmp_path):
    vol = np.zeros((16, 16, 16), np.float32)
    vol[3, 4, 5] = np.nan
    write_mrc(tmp_path / "n.mrc", vol, 3.0)
    with pytest.raises(GenemInputError, match="NaN"):
        load_potential(tmp_path / "n.mrc", 4.0)


# ------------------------------------------------------------------------------------------------ item 6
def _cfg(path, **kw):
    return SimulationConfig(**{**SMALL, "structures": (StructureSpec(path=str(path)),), **kw})


def test_default_count_and_box_follow_the_structure(tmp_path):
    """A structure too large for 40 particles: the default count adapts, the box follows its size, one line says so."""
    path = _blob_map(tmp_path / "big.mrc", n=48, radius_px=12.0, voxel=(4.0, 4.0, 4.0))
    lines = []
    cfg, _ = resolve_config(_cfg(path), log=lines.append)
    assert 1 <= cfg.particles_per_micrograph < 40 and cfg.particle_box_px % 2 == 0
    assert cfg.particle_box_px > 2 * 12 and cfg.particle_box_px <= 192
    assert len(lines) == 1 and str(cfg.particles_per_micrograph) in lines[0] and str(cfg.particle_box_px) in lines[0]
    with pytest.raises(GenemInputError, match="do not fit"):  # an explicit impossible count still errors
        resolve_config(_cfg(path, particles_per_micrograph=100))
    small, _ = resolve_config(_cfg(_blob_map(tmp_path / "small.mrc", radius_px=3.0), micrograph_size_px=(512, 512)))
    assert small.particles_per_micrograph == 40 and small.particle_box_px < cfg.particle_box_px
    out = run_simulation(_cfg(path), tmp_path / "out", progress=None)
    assert json.loads((out / "manifest.json").read_text())["config"]["particle_box_px"] == cfg.particle_box_px


def test_a_structure_larger_than_the_micrograph(tmp_path):
    path = _blob_map(tmp_path / "huge.mrc", n=64, radius_px=20.0, voxel=(8.0, 8.0, 8.0))
    with pytest.raises(GenemInputError, match="does not fit"):
        resolve_config(_cfg(path, micrograph_size_px=(64, 64)))


def test_the_builtin_default_is_unchanged():
    cfg, _ = resolve_config(SimulationConfig())
    assert cfg.particles_per_micrograph == 40 and cfg.particle_box_px == 128


@pytest.mark.parametrize("name, kw", [("models/8zpm.cif", {}), ("models/6z6u.pdb", {}),
                                      ("maps/aspire/clean70SRibosome_vol_65p.mrc", {"map_pixel_size_A": 5.0})])
def test_deposited_structures_just_work(shared_data, name, kw):
    spec = StructureSpec(path=str(shared_data / name), **kw)
    cfg, potentials = resolve_config(SimulationConfig(structures=(spec,)))
    diameter_px = 2 * max(p.radius_A for p in potentials) / cfg.pixel_size_A
    assert 1.5 * diameter_px <= cfg.particle_box_px <= 2 * diameter_px + 2
    assert 1 <= cfg.particles_per_micrograph <= 40


# ------------------------------------------------------------------------------------------------ items 8, 10
def test_ground_truth_at_the_particle_box_and_the_preview(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    radii = []
    circle = plt.Circle
    monkeypatch.setattr(plt, "Circle", lambda xy, r, **kw: radii.append(r) or circle(xy, r, **kw))
    path = _blob_map(tmp_path / "m.mrc", n=32, radius_px=6.0, voxel=(4.0, 4.0, 4.0))
    out = run_simulation(_cfg(path, particle_box_px=48, particles_per_micrograph=3), tmp_path / "out",
                         progress=None)
    man = json.loads((out / "manifest.json").read_text())
    native, boxed = man["ground_truth_maps"][0], man["ground_truth_maps_particle_box"][0]
    assert boxed == "ground_truth/structure_00_box48.mrc"
    with mrcfile.open(out / native) as a, mrcfile.open(out / boxed) as b:
        va, vb = a.data.astype(np.float64), b.data.astype(np.float64)
        assert vb.shape == (48, 48, 48) and float(b.voxel_size.x) == pytest.approx(4.0)
    assert vb.sum() == pytest.approx(va.sum(), rel=1e-5)
    grid = lambda v: np.arange(v.shape[0]) - v.shape[0] // 2  # noqa: E731
    com = lambda v: [float((v.sum(axis=tuple(j for j in range(3) if j != i)) * grid(v)).sum() / v.sum())  # noqa: E731
                     for i in range(3)]
    np.testing.assert_allclose(com(vb), com(va), atol=1e-4)
    pa, pb = va.sum(0), vb.sum(0)
    o = (48 - va.shape[0]) // 2
    np.testing.assert_allclose(pb[o:o + va.shape[0], o:o + va.shape[0]], pa, atol=1e-4)
    # preview: the noisy micrograph beside its clean twin, circles the size of the particle (not the box)
    from PIL import Image

    w, h = Image.open(out / "preview.png").size
    assert w > 1.6 * h
    radius_px = load_potential(path, 4.0).radius_A / 4.0
    assert radii and np.allclose(radii, radius_px) and radius_px < 48 / 2


# ------------------------------------------------------------------------------------------------ item 8: flags
def test_negative_ranges_parse_without_equals():
    from genem.cli.main import build_parser

    args = build_parser().parse_args(["simulate", "--out", "x", "--defocus-A", "-20000,-5000",
                                      "--phase-shift-deg", "-10:-5", "--bfactor-A2", "-50"])
    assert args.defocus_A == (-20000.0, -5000.0) and args.phase_shift_deg == (-10.0, -5.0) and args.bfactor_A2 == -50


def test_every_flag_shows_its_default(capsys):
    from genem.cli.main import main

    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for s in ("(default: 40, fewer when a large structure does not fit", "(default: 1.75x the structure's diameter)",
              "has none (default: the map header's)", "(default: 0/1", "cpu or cuda (default: cpu)",
              "(default: half the box)", "(default: the structure's diameter)"):
        assert s in text, s


@pytest.mark.parametrize("argv", [["simulate"], ["translate", "train"], ["translate", "apply"], ["denoise", "train"],
                                  ["denoise", "apply"], ["pick", "train"], ["pick", "apply"], ["evaluate", "realism"],
                                  ["evaluate", "denoise"], ["evaluate", "picking"]])
def test_no_flag_without_its_default(argv):
    """Every optional flag that takes a value says in --help what it is when left out."""
    import argparse

    from genem.cli.main import build_parser

    parser = build_parser()
    for word in argv:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    for a in parser._actions:
        if a.option_strings and a.nargs != 0 and not a.required and a.help != argparse.SUPPRESS:
            assert "(default" in (a.help or ""), (argv, a.option_strings)


def test_potential_memory_check_respects_the_process_limit(tmp_path):
    """A map whose resampled potential fits the machine but not the process's data limit (``ulimit -d``, as batch
    queues set) is refused before allocating, not killed by a MemoryError."""
    import subprocess
    import sys

    from genem.io import write_mrc

    mrc = tmp_path / "map.mrc"
    write_mrc(mrc, np.random.default_rng(0).random((32, 32, 32)).astype(np.float32), 18.75)  # 600 A: 400^3 at 1.5 A
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_DATA, (2 << 30, resource.RLIM_INFINITY))\n"
            "from genem.io import GenemInputError\n"
            "from genem.simulate.structures import load_potential\n"
            "try:\n"
            "    load_potential(sys.argv[1], 1.5)\n"
            "except GenemInputError as e:\n"
            "    print(e); sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", code, str(mrc)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr[-1500:]
    assert "400^3 potential needs" in r.stdout and "2.0 GiB available" in r.stdout, r.stdout
