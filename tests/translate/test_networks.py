"""Generator / discriminator shapes, seamless locality, PatchNCE and mask-guided sampling."""
import numpy as np
import torch

from genem.translate.networks import Generator, GeneratorConfig, PatchDiscriminator, lsgan_loss
from genem.translate.patchnce import PatchProjector, compute_patchnce_loss, patchnce_loss_layer
from genem.translate.sampling import (downsample_mask_2d, negative_allowed_mask, sample_patch_ids_masked,
                                      sample_patch_ids_random)


def test_generator_shapes_and_features():
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(base_channels=8, n_down=2, n_blocks=2))
    x = torch.randn(2, 1, 64, 96)
    assert g(x).shape == x.shape
    feats = g.encode(x)
    assert [f.shape[1] for f in feats] == g.feature_channels
    assert feats[0].shape[-2:] == (64, 96) and feats[2].shape[-2:] == (16, 24)
    d = PatchDiscriminator()
    assert d(torch.randn(2, 1, 128, 128)).shape == (2, 1, 14, 14)


def test_generator_is_local_no_tile_statistics():
    """Without normalisation layers, a pixel far from a change does not see it (needed for seamless tiling)."""
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(base_channels=8, n_down=2, n_blocks=2)).eval()
    x = torch.randn(1, 1, 256, 256)
    x2 = x.clone()
    x2[..., 200:, 200:] += 5.0
    with torch.no_grad():
        y, y2 = g(x), g(x2)
    assert torch.allclose(y[..., :100, :100], y2[..., :100, :100], atol=1e-6)
    assert not torch.allclose(y[..., 200:, 200:], y2[..., 200:, 200:])


def test_receptive_radius_is_the_reach_of_one_pixel():
    """``receptive_radius_px`` (tiled inference relies on it) bounds how far a pixel reaches, and is nearly
    reached (how far exactly depends on the pixel's position modulo the stride), with and without anti-aliasing."""
    for cfg in (GeneratorConfig(), GeneratorConfig(base_channels=4, n_down=1, n_blocks=2),
                GeneratorConfig(base_channels=4, n_down=3, n_blocks=1), GeneratorConfig(base_channels=4, antialias=False)):
        torch.manual_seed(0)
        g = Generator(cfg).eval()
        for b in g.blocks:  # blocks start near the identity; give them reach
            torch.nn.init.normal_(b.c2.weight, 0.0, 0.3)
        reach = 0
        for pos in ((96, 96), (97, 99), (98, 101), (103, 102)):
            x = torch.randn(1, 1, 192, 192, requires_grad=True)
            g(x)[0, 0, pos[0], pos[1]].backward()
            nz = (x.grad[0, 0] != 0).nonzero()
            reach = max(reach, int((nz - torch.tensor(pos)).abs().max()))
        assert g.receptive_radius_px - 2 <= reach <= g.receptive_radius_px


def test_lsgan_loss_values():
    s = torch.tensor([1.0, 0.0])
    assert float(lsgan_loss(s, True)) == 0.5 and float(lsgan_loss(s, False)) == 0.5


def test_masked_sampling_balanced_and_negatives_opposite():
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(3, 32, 32, dtype=torch.bool)
    mask[0, 8:20, 8:20] = True          # a particle: guided
    mask[1, 0, 0] = True                # tiny mask: falls back to random
    # mask[2] empty: falls back to random
    ids, labels, guided = sample_patch_ids_masked(mask, 64, min_per_class=8, generator=g)
    assert ids.shape == (3, 64)
    assert guided.tolist() == [True, False, False]
    assert labels[0].sum() == 32  # half the queries on the particle
    assert torch.equal(labels[0], mask[0].reshape(-1)[ids[0]])
    assert len(set(ids[2].tolist())) == 64  # random fallback draws distinct cells
    allowed = negative_allowed_mask(labels, guided)
    lab = labels[0]
    assert torch.equal(allowed[0], lab[:, None] != lab[None, :])  # particle vs background only
    assert not allowed[1].diagonal().any() and allowed[1].sum() == 64 * 63


def test_downsample_mask_threshold():
    m = torch.zeros(1, 8, 8, dtype=torch.bool)
    m[0, :4, :4] = True
    m[0, 4, 4] = True
    d = downsample_mask_2d(m, (2, 2))
    assert d.tolist() == [[[True, False], [False, False]]]


def test_patchnce_prefers_matching_patches():
    torch.manual_seed(0)
    b, p, d = 2, 16, 8
    k = torch.nn.functional.normalize(torch.randn(b, p, d), dim=-1)
    allowed = negative_allowed_mask(torch.zeros(b, p, dtype=torch.bool), torch.zeros(b, dtype=torch.bool))
    good = patchnce_loss_layer(k, k, allowed, 0.07)
    bad = patchnce_loss_layer(k[:, torch.randperm(p)], k, allowed, 0.07)
    assert good < 0.5 and bad > 2.0


def test_patchnce_empty_and_tiny_masks_do_not_crash():
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(base_channels=8, n_down=2, n_blocks=2))
    proj = PatchProjector(g.feature_channels, dim=32)
    x = torch.randn(3, 1, 64, 64)
    masks = torch.zeros(3, 64, 64, dtype=torch.bool)
    masks[1, 10, 10] = True
    masks[2] = True  # all particle, no background
    loss, info = compute_patchnce_loss(g.encode(x), g.encode(g(x)), proj, masks_bhw=masks, n_patches=64)
    assert torch.isfinite(loss) and info["guided_fraction"] == 0.0
    loss.backward()
    assert all(p.grad is not None for p in proj.parameters())


def test_a_model_saved_before_antialias_and_skip_loads_as_it_was(tmp_path):
    """model.pt files written before the generator had ``antialias`` / ``skip`` load as the old architecture."""
    from genem.translate.model import FORMAT, load_model

    torch.manual_seed(0)
    old = Generator(GeneratorConfig(base_channels=4, n_blocks=1, antialias=False, skip=False)).eval()
    cfg = {"base_channels": 4, "n_down": 2, "n_blocks": 1}  # the keys an old file has
    torch.save({"format": FORMAT, "generator_config": cfg, "generator": old.state_dict(), "pixel_size_A": 2.0},
               tmp_path / "model.pt")
    g, _ = load_model(tmp_path / "model.pt")
    assert not g.config.antialias and not g.config.skip
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(g(x), old(x))
