"""Fixtures for the translate tests: one thread for torch, a tiny simulated dataset, a synthetic 'real' domain."""
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import scipy.ndimage as ndi


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every translate test runs with one torch thread (tests/conftest.py)."""


def make_simulation(root: Path) -> Path:
    from genem.simulate import SimulationConfig, run_simulation

    cfg = SimulationConfig(n_micrographs=2, micrograph_size_px=(192, 192), pixel_size_A=2.0, particle_box_px=48,
                           particles_per_micrograph=6, noise_mode="snr", snr=0.1, seed=3)
    return run_simulation(cfg, root)


def make_fake_real(folder: Path, n: int = 2, size: int = 800, pixel_size_A: float = 0.8, seed: int = 0):
    """'Real' micrographs with a clearly non-white spectrum: blurred noise plus dark blobs, uint16 counts,
    at 0.8 A/px, finer than the simulation's 2 A (so loading must Fourier-crop them)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        x = ndi.gaussian_filter(rng.normal(size=(size, size)), 3.0)
        x /= x.std()
        yy, xx = np.mgrid[0:size, 0:size]
        for _ in range(12):
            cy, cx = rng.uniform(0, size, 2)
            x -= 1.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 12.0 ** 2))
        counts = np.clip(1000 + 80 * x + rng.normal(0, 5, x.shape), 0, 65535).astype(np.uint16)
        counts[3, 3] = 65000  # a hot pixel
        p = folder / f"real_{i}.mrc"
        with mrcfile.new(p, overwrite=True) as m:
            m.set_data(counts)
            m.voxel_size = pixel_size_A
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def tiny_sim(tmp_path_factory):
    return make_simulation(tmp_path_factory.mktemp("translate_sim") / "sim")


@pytest.fixture(scope="session")
def fake_real(tmp_path_factory):
    return make_fake_real(tmp_path_factory.mktemp("translate_real") / "real")


@pytest.fixture(scope="session")
def quick_model(tiny_sim, fake_real, tmp_path_factory):
    """A translator trained for a few steps: enough to exercise apply (not to judge quality)."""
    from genem.translate.networks import DiscriminatorConfig, GeneratorConfig
    from genem.translate.train import TranslateTrainConfig, train_translator

    cfg = TranslateTrainConfig(steps=3, tile_px=64, batch_size=2, nce_patches=32, nce_dim=32, log_every=1,
                               grid_every=3, checkpoint_every=3, generator=GeneratorConfig(8, 2, 2),
                               discriminator=DiscriminatorConfig(8, 2))
    out = tmp_path_factory.mktemp("translate_quick") / "model"
    return train_translator(cfg, tiny_sim, [str(p) for p in fake_real], out)
