"""``genem pick apply`` and ``genem evaluate picking`` end to end on synthetic micrographs with known centres: output
formats (coordinate STARs in the input's pixels, the Extract list, the cryoSPARC location slot), 8-bit PNG/TIFF
input, and bad input (one-line error, exit != 0, nothing written)."""
import json
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
from PIL import Image

from genem.cli.main import main
from genem.pick import Picker, PickerMeta

PX = 2.0
DIAMETER_A = 80.0  # 40 px: the DoG picker bins to 5 A/px (2.5x)
CENTRES = np.array([[60.0, 50.0], [150.0, 120.0], [240.0, 62.0], [100.0, 150.0]])  # (x = column, y = row)
SHAPE = (200, 300)


def _micrograph(seed=0) -> np.ndarray:
    yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
    img = np.random.default_rng(seed).normal(0, 0.3, SHAPE)
    for x, y in CENTRES:
        img -= ((xx - x) ** 2 + (yy - y) ** 2 <= 20 ** 2) * 1.0  # dark particles, as raw micrographs
    return img.astype(np.float32)


def _write_mrc(path, img, px=PX):
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(img)
        m.voxel_size = px


def _cli(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture
def mics(tmp_path):
    d = tmp_path / "mics"
    d.mkdir()
    _write_mrc(d / "a.mrc", _micrograph(0))
    u16 = np.clip((_micrograph(1) + 3) * 5000, 0, 65535).astype(np.uint16)  # integer dtype, as detectors write
    _write_mrc(d / "b.mrc", u16)
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
                           "rlnMicrographPixelSize": [PX], "rlnVoltage": [300.0]})
    rows = pd.DataFrame({"rlnMicrographName": ["mics/a.mrc", "mics/b.mrc"], "rlnOpticsGroup": [1, 1]})
    starfile.write({"optics": optics, "micrographs": rows}, tmp_path / "micrographs.star", overwrite=True)
    return tmp_path


def _nearest(xy, centres):
    return np.array([np.min(np.hypot(*(xy - c).T)) for c in centres])


def test_outputs_in_input_pixels_and_platform_formats(mics, monkeypatch):
    monkeypatch.chdir(mics)
    assert _cli("pick", "apply", "--method", "dog", "--diameter-A", DIAMETER_A, "--micrographs", "micrographs.star",
                "--out", "out", "--no-progress") == 0
    out = mics / "out"
    for stem in ("a", "b"):
        t = starfile.read(out / "picks" / f"{stem}.star")
        assert list(t.columns) == ["rlnCoordinateX", "rlnCoordinateY", "rlnAutopickFigureOfMerit"]
        top = t.sort_values("rlnAutopickFigureOfMerit", ascending=False).iloc[:4]
        assert _nearest(top[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(), CENTRES).max() <= 3.0
    lst = starfile.read(out / "coordinates.star", always_dict=True)["coordinate_files"]
    assert list(lst["rlnMicrographName"]) == ["mics/a.mrc", "mics/b.mrc"]
    assert all(Path(p).is_file() for p in lst["rlnMicrographCoordinates"])
    from cryosparc.dataset import Dataset

    cs = Dataset.load(out / "particles.cs")
    a = starfile.read(out / "picks" / "a.star")
    rows = cs.query({"location/micrograph_path": "mics/a.mrc"})
    assert len(rows) == len(a) and set(cs.prefixes()) == {"location", "pick_stats"}
    np.testing.assert_array_equal(rows["location/micrograph_shape"], [list(SHAPE)] * len(a))
    np.testing.assert_allclose(rows["location/center_x_frac"] * SHAPE[1], a["rlnCoordinateX"], atol=1e-3)
    np.testing.assert_allclose(rows["location/center_y_frac"] * SHAPE[0], a["rlnCoordinateY"], atol=1e-3)
    np.testing.assert_allclose(rows["location/micrograph_psize_A"], PX)
    np.testing.assert_allclose(rows["pick_stats/ncc_score"], a["rlnAutopickFigureOfMerit"], rtol=1e-5)
    summary = json.loads((out / "picks.json").read_text())
    assert summary["method"] == "dog" and summary["micrographs"][0]["diameter_px"] == pytest.approx(40)
    assert (out / "preview.png").stat().st_size > 0
    # a second run into its own folder is fine
    assert _cli("pick", "apply", "--method", "dog", "--diameter-A", DIAMETER_A, "--micrographs", "micrographs.star",
                "--out", "out", "--no-progress", "--threshold", "0") == 0


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_8bit_renders_need_a_pixel_size_and_give_the_same_picks(tmp_path, suffix, capsys):
    img = _micrograph(0)
    u8 = np.clip((img - img.min()) / np.ptp(img) * 255, 0, 255).astype(np.uint8)
    Image.fromarray(u8).save(tmp_path / f"r{suffix}")
    args = ["pick", "apply", "--method", "dog", "--diameter-A", DIAMETER_A, "--no-progress",
            "--micrographs", str(tmp_path / f"*{suffix}")]
    assert _cli(*args, "--out", tmp_path / "no_px") == 2
    assert "no pixel size" in capsys.readouterr().err and not (tmp_path / "no_px").exists()
    assert _cli(*args, "--out", tmp_path / "o", "--pixel-size-A", PX) == 0
    t = starfile.read(tmp_path / "o" / "picks" / "r.star").sort_values("rlnAutopickFigureOfMerit", ascending=False)
    assert _nearest(t[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy()[:4], CENTRES).max() <= 3.0


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genem: error: ")
    return err[0]


def test_bad_input_is_one_line_and_writes_nothing(mics, tmp_path, capsys):
    dog = ["pick", "apply", "--method", "dog", "--diameter-A", DIAMETER_A, "--no-progress"]
    out = tmp_path / "never"
    assert _cli(*dog, "--micrographs", tmp_path / "nothing_here" / "*.mrc", "--out", out) == 2
    assert "no micrographs match" in _error_line(capsys)
    (tmp_path / "bad.mrc").write_bytes(b"not an mrc file at all" * 10)
    assert _cli(*dog, "--micrographs", mics / "mics" / "a.mrc", tmp_path / "bad.mrc", "--out", out) == 2
    assert "bad.mrc" in _error_line(capsys)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    assert _cli(*dog, "--micrographs", tmp_path / "bad.png", "--pixel-size-A", 2, "--out", out) == 2
    assert "not a readable image" in _error_line(capsys)
    assert not out.exists()
    # a picker made for 1 A/px cannot pick 2 A/px micrographs (it would need 2x upsampling)
    model = Picker(PickerMeta(1.0, DIAMETER_A, width=8)).save(tmp_path / "fine_model")
    assert _cli("pick", "apply", "--model", model, "--micrographs", mics / "mics" / "a.mrc", "--out", out,
                "--no-progress") == 2
    assert "coarser than the picker" in _error_line(capsys) and not out.exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert _cli(*dog, "--micrographs", mics / "mics" / "a.mrc", "--out", foreign) == 2
    assert "not empty" in _error_line(capsys) and sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert _cli("pick", "train", "--data", tmp_path / "no_dataset", "--out", tmp_path / "m") == 2
    assert "dataset folder not found" in _error_line(capsys) and not (tmp_path / "m").exists()
    assert _cli("pick", "apply", "--model", tmp_path, "--micrographs", mics / "mics" / "a.mrc", "--out", out) == 2
    assert "not a picker model folder" in _error_line(capsys)


def test_evaluate_against_coordinate_stars_and_masks(mics, tmp_path, capsys):
    assert _cli("pick", "apply", "--method", "dog", "--diameter-A", DIAMETER_A, "--no-progress", "--threshold", 0,
                "--micrographs", mics / "mics" / "a.mrc", mics / "mics" / "b.mrc", "--out", tmp_path / "p") == 0
    truth = tmp_path / "truth"
    truth.mkdir()
    for stem in ("a", "b"):
        starfile.write(pd.DataFrame({"rlnCoordinateX": CENTRES[:, 0], "rlnCoordinateY": CENTRES[:, 1]}),
                       truth / f"{stem}_coords.star", overwrite=True)
    assert _cli("evaluate", "picking", "--picks", tmp_path / "p", "--truth", truth, "--out", tmp_path / "r.json") == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["auprc"] == pytest.approx(1.0) and rep["n_truth"] == 8 and rep["radius_px"] == pytest.approx(20)
    assert (tmp_path / "r_pr.png").is_file() and (tmp_path / "r_overlay.png").is_file()
    # truth 10 px away: matched within a 15 px radius, not within 5 px
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    for stem in ("a", "b"):
        starfile.write(pd.DataFrame({"rlnCoordinateX": CENTRES[:, 0] + 6, "rlnCoordinateY": CENTRES[:, 1] + 8}),
                       shifted / f"{stem}.star", overwrite=True)
    for radius, auprc in ((5, 0.0), (15, 1.0)):
        assert _cli("evaluate", "picking", "--picks", tmp_path / "p", "--truth", shifted, "--out",
                    tmp_path / "z.json", "--radius-px", radius) == 0
        assert json.loads((tmp_path / "z.json").read_text())["auprc"] == pytest.approx(auprc)
    # label masks (8-bit, disks) give the same truth and the radius from the disks
    masks = tmp_path / "masks"
    masks.mkdir()
    yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
    disk = np.zeros(SHAPE, bool)
    for x, y in CENTRES:
        disk |= (xx - x) ** 2 + (yy - y) ** 2 <= 20 ** 2
    for stem in ("a", "b"):
        Image.fromarray((disk * 255).astype(np.uint8)).save(masks / f"{stem}.png")
    assert _cli("evaluate", "picking", "--picks", tmp_path / "p", "--truth", masks, "--out", tmp_path / "m.json") == 0
    rep = json.loads((tmp_path / "m.json").read_text())
    assert rep["auprc"] == pytest.approx(1.0) and rep["radius_px"] == pytest.approx(20, abs=0.5)
    capsys.readouterr()
    assert _cli("evaluate", "picking", "--picks", tmp_path / "p", "--truth", tmp_path / "mics_none",
                "--out", tmp_path / "n.json") == 2
    assert "truth not found" in _error_line(capsys)


def test_model_picks_with_its_recorded_threshold(mics, tmp_path):
    import torch

    torch.manual_seed(0)
    model = Picker(PickerMeta(5.0, DIAMETER_A, width=8, threshold=0.04)).save(tmp_path / "model")
    assert _cli("pick", "apply", "--model", model, "--micrographs", mics / "micrographs.star", "--out",
                tmp_path / "o", "--no-progress") == 0
    assert json.loads((tmp_path / "o" / "picks.json").read_text())["threshold"] == pytest.approx(0.04)
    fom = starfile.read(tmp_path / "o" / "picks" / "a.star")["rlnAutopickFigureOfMerit"]
    assert (fom >= 0.04).all()
    if not torch.cuda.is_available():
        assert _cli("pick", "apply", "--model", model, "--micrographs", mics / "micrographs.star", "--out",
                    tmp_path / "g", "--device", "cuda", "--no-progress") == 2
