"""A seeded tiny training run measurably learns; checkpoints resume exactly; save/load round-trips."""
import numpy as np
import pytest
import torch

from genem.io import GenemInputError
from genem.metrics.realism import raps_distance
from genem.translate.data import load_simulated_set, prepare_real_micrograph, sample_tiles
from genem.translate.networks import DiscriminatorConfig, Generator, GeneratorConfig
from genem.translate import TranslateTrainConfig, load_model, read_loss_log, train_translator

TINY = TranslateTrainConfig(steps=200, tile_px=64, batch_size=4, nce_patches=64, nce_dim=64, lr=1e-3,
                            log_every=20, grid_every=100, checkpoint_every=100, seed=0,
                            generator=GeneratorConfig(base_channels=8, n_down=2, n_blocks=2),
                            discriminator=DiscriminatorConfig(base_channels=16, n_layers=2))


def _eval_tiles(sim_dir, real_paths, px):
    sim = load_simulated_set(sim_dir)
    rng = np.random.default_rng(99)
    xs, _ = sample_tiles(sim.images, 64, 48, rng, masks=sim.masks)
    real = [prepare_real_micrograph(p, px).image for p in real_paths]
    ys, _ = sample_tiles(real, 64, 48, rng, column_ranges=[(r.shape[1] * 3 // 4, r.shape[1]) for r in real])
    return xs, ys  # real tiles from the held-out strip only


def _translate(g, xs):
    with torch.no_grad():
        return g.eval()(torch.from_numpy(xs)[:, None]).numpy()[:, 0]


@pytest.fixture(scope="module")
def trained(tiny_sim, fake_real, tmp_path_factory):
    out = tmp_path_factory.mktemp("translate_model") / "model"
    train_translator(TINY, tiny_sim, [str(p) for p in fake_real], out)
    return out


def test_tiny_run_learns(trained, tiny_sim, fake_real):
    log = read_loss_log(trained)
    assert [r["step"] for r in log] == list(range(20, 201, 20))
    nce = [r["loss_nce"] for r in log]
    # the generator starts at the identity (PatchNCE ~0) and changes the image while keeping its content: the
    # loss stays far below chance, log(patches), while the spectrum moves to the real one (below)
    assert max(nce) < 0.5 * np.log(TINY.nce_patches) and max(nce) > 0.05, nce
    assert all(r["guided_fraction"] > 0.3 for r in log)  # mask-guided sampling is in use
    xs, ys = _eval_tiles(tiny_sim, fake_real, 2.0)
    torch.manual_seed(TINY.seed)
    g0 = Generator(TINY.generator)  # the untrained generator the run started from
    g, _ = load_model(trained)
    d_sim = raps_distance(ys, xs)
    d_init = raps_distance(ys, _translate(g0, xs))
    d_trained = raps_distance(ys, _translate(g, xs))
    assert d_trained < 0.5 * d_sim and d_trained < 0.6 * d_init, (d_sim, d_init, d_trained)
    assert sorted(p.name for p in (trained / "samples").glob("*.png")) == ["step_000100.png", "step_000200.png"]
    assert (trained / "heldout" / "real_000.mrc").exists()


def test_save_load_round_trip_identical(trained, tiny_sim, fake_real):
    xs, _ = _eval_tiles(tiny_sim, fake_real, 2.0)
    g1, meta = load_model(trained)
    g2, _ = load_model(trained / "model.pt")
    ck = torch.load(sorted((trained / "checkpoints").glob("*.pt"))[-1], weights_only=False)
    g3 = Generator(TINY.generator)
    g3.load_state_dict(ck["state"]["G_ema"])  # model.pt holds the EMA generator
    a, b, c = _translate(g1, xs), _translate(g2, xs), _translate(g3, xs)
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert meta["pixel_size_A"] == 2.0


def test_resume_continues_exactly(tiny_sim, fake_real, tmp_path):
    cfg = TINY.replace(steps=6, log_every=2, grid_every=6, checkpoint_every=3)
    real = [str(p) for p in fake_real]
    train_translator(cfg, tiny_sim, real, tmp_path / "full")
    train_translator(cfg.replace(steps=3), tiny_sim, real, tmp_path / "split")
    assert (tmp_path / "split" / "model.pt").exists()
    with pytest.raises(GenemInputError, match="--resume"):
        train_translator(cfg, tiny_sim, real, tmp_path / "split")
    train_translator(cfg, tiny_sim, real, tmp_path / "split", resume=True)
    a, _ = load_model(tmp_path / "full")
    b, _ = load_model(tmp_path / "split")
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k
    assert [r["step"] for r in read_loss_log(tmp_path / "split")] == [2, 3, 4, 6]


def test_empty_masks_do_not_crash_training(tiny_sim, fake_real, tmp_path):
    import shutil

    from genem.io import write_mrc

    sim = tmp_path / "sim"
    shutil.copytree(tiny_sim, sim)
    for m in (sim / "Masks").glob("*.mrc"):
        write_mrc(m, np.zeros((192, 192)), 2.0, dtype=np.uint16)
    train_translator(TINY.replace(steps=3, log_every=1), sim, [str(p) for p in fake_real], tmp_path / "m")
    assert [r["guided_fraction"] for r in read_loss_log(tmp_path / "m")] == [0.0, 0.0, 0.0]
