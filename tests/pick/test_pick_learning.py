"""A tiny seeded training run on simulated micrographs learns (held-out AUPRC far above the untrained network's),
and training is deterministic, resumable, fine-tunable and saved / loaded exactly."""
import json

import numpy as np
import pytest
import torch

from genem.io import GenemInputError
from genem.pick import Picker, PickerMeta, PickTrainConfig, pick_image, score_micrographs, train_picker
from genem.pick.data import dataset_pairs
from genem.io.images import read_image
from genem.simulate import SimulationConfig, run_simulation

SIM = dict(micrograph_size_px=(256, 256), pixel_size_A=6.0, particle_box_px=32, particles_per_micrograph=12,
           ice="none", noise_mode="snr", snr=0.5)
TINY = dict(width=8, batch_size=8, patch_px=64)


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pick_sims")
    train = run_simulation(SimulationConfig(n_micrographs=3, seed=1, **SIM), root / "train")
    test = run_simulation(SimulationConfig(n_micrographs=2, seed=2, **SIM), root / "test")
    yield train, test
    torch.set_num_threads(n)


def _heldout_auprc(picker, dataset) -> float:
    items = []
    for path, centres, px in dataset_pairs(dataset):
        img, _ = read_image(path)
        xy, s = pick_image(picker, img, px)
        items.append((xy, s, centres))
    return score_micrographs(items, 0.5 * picker.particle_diameter_A / SIM["pixel_size_A"])["auprc"]


def test_tiny_run_learns_on_heldout_micrographs(sims, tmp_path):
    train, test = sims
    events = []
    out = train_picker([train], tmp_path / "m", PickTrainConfig(steps=40, seed=0, **TINY), progress=events.append)
    picker = Picker.load(out)
    torch.manual_seed(0)  # the untrained network starts where training started
    untrained = Picker(PickerMeta(picker.pixel_size_A, picker.particle_diameter_A, TINY["width"], 2))
    learned, before = _heldout_auprc(picker, test), _heldout_auprc(untrained, test)
    assert learned > 0.7 and learned > before + 0.3, (learned, before)
    # geometry from the data: diameter measured on the masks (~85 A), picker at the data's 6 A/px
    assert 70 < picker.particle_diameter_A < 100 and picker.pixel_size_A == pytest.approx(6.0)
    meta = json.loads((out / "picker.json").read_text())
    assert 0 < meta["threshold"] < 1 and "training micrographs" in meta["threshold_source"]
    loss = np.loadtxt(out / "loss.tsv", skiprows=1)
    assert loss.shape == (4, 2) and loss[-1, 1] < loss[0, 1]
    assert events[-1].done == events[-1].total == 40 and "loss" in events[-1].info


def _weights(folder):
    return torch.load(folder / "model.pt", weights_only=True)


def test_seeded_training_is_deterministic_and_resumes_exactly(sims, tmp_path):
    train, _ = sims
    cfg = PickTrainConfig(steps=6, seed=3, checkpoint_every=3, **TINY)
    straight = train_picker([train], tmp_path / "a", cfg)
    half = train_picker([train], tmp_path / "b", cfg.__class__(**{**cfg.__dict__, "steps": 3}))
    with pytest.raises(GenemInputError, match="--resume"):
        train_picker([train], half, cfg)
    resumed = train_picker([train], half, cfg, resume=True)
    other_seed = train_picker([train], tmp_path / "c", cfg.__class__(**{**cfg.__dict__, "seed": 4}))
    wa, wb, wc = _weights(straight), _weights(resumed), _weights(other_seed)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_fine_tuning_starts_from_init_and_keeps_its_geometry(sims, tmp_path):
    train, _ = sims
    base = train_picker([train], tmp_path / "base", PickTrainConfig(steps=2, **TINY))
    tuned = train_picker([train], tmp_path / "tuned", PickTrainConfig(steps=2, **TINY), init=base)
    a, b = Picker.load(base).meta, Picker.load(tuned).meta
    assert (a.pixel_size_A, a.particle_diameter_A) == (b.pixel_size_A, b.particle_diameter_A)
    assert Picker.load(tuned).meta.training["init"] == str(base)
    with pytest.raises(GenemInputError, match="A/px"):
        train_picker([train], tmp_path / "x", PickTrainConfig(steps=2, pixel_size_A=9.0, **TINY), init=base)


def test_heatmap_shape_and_save_load(tmp_path):
    torch.manual_seed(0)
    p = Picker(PickerMeta(5.0, 80.0, width=8))
    img = np.random.default_rng(0).normal(size=(37, 53)).astype(np.float32)
    h = p.heatmap(img)
    assert h.shape == img.shape and h.min() >= 0 and h.max() <= 1
    q = Picker.load(p.save(tmp_path / "m"))
    assert q.meta == p.meta
    np.testing.assert_array_equal(q.heatmap(img), h)


def _real_labelled(folder, n=2):
    """8-bit PNG 'renders' with dark disks (diameter 20 px) and their CryoPPP-style label masks, plus coordinate
    STARs of the same centres."""
    import pandas as pd
    import starfile
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    (folder / "stars").mkdir()
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:96, :128]
    for k in range(n):
        centres = np.array([[30, 30], [70, 40], [100, 70], [40, 72]]) + rng.integers(-3, 4, (4, 2))
        disk = np.zeros((96, 128), bool)
        for x, y in centres:
            disk |= (xx - x) ** 2 + (yy - y) ** 2 <= 100
        img = np.clip(128 + rng.normal(0, 20, disk.shape) - 40 * disk, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / "images" / f"m{k}.png")
        Image.fromarray((disk * 255).astype(np.uint8)).save(folder / "labels" / f"m{k}.png")
        starfile.write(pd.DataFrame({"rlnCoordinateX": centres[:, 0], "rlnCoordinateY": centres[:, 1]}),
                       folder / "stars" / f"m{k}_manualpick.star", overwrite=True)
    return folder


def test_real_labels_alone_or_mixed_with_synthetic(sims, tmp_path):
    real = _real_labelled(tmp_path / "real")
    cfg = PickTrainConfig(steps=2, real_pixel_size_A=4.0, **TINY)
    masks = train_picker([], tmp_path / "masks", cfg, real_labels=[real / "labels"],
                         real_micrographs=[real / "images"])
    meta = Picker.load(masks).meta
    assert meta.particle_diameter_A == pytest.approx(80, rel=0.05)  # 20 px disks at 4 A/px
    assert meta.training["n_micrographs"] == 2
    with pytest.raises(GenemInputError, match="diameter"):
        train_picker([], tmp_path / "stars", cfg, real_labels=[real / "stars"], real_micrographs=[real / "images"])
    stars = train_picker([], tmp_path / "stars", PickTrainConfig(**{**cfg.__dict__, "particle_diameter_A": 80.0}),
                         real_labels=[real / "stars"], real_micrographs=[real / "images"])
    assert Picker.load(stars).meta.training["n_micrographs"] == 2
    mixed = train_picker([sims[0]], tmp_path / "mixed", cfg, real_labels=[real / "labels"],
                         real_micrographs=[real / "images"])
    assert Picker.load(mixed).meta.training["n_micrographs"] == 5
    with pytest.raises(GenemInputError, match="--real-pixel-size-A"):
        train_picker([], tmp_path / "nopx", PickTrainConfig(steps=2, **TINY), real_labels=[real / "labels"],
                     real_micrographs=[real / "images"])
