import math

import pytest
import torch

from genem.restore.sampler import sample_conditional
from genem.restore.schedule import DiffusionSchedule, make_betas


def test_linear_betas_match_ho_et_al():
    b = make_betas("linear", 1000)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)


def test_cosine_alphas_cumprod_follow_nichol_dhariwal():
    s = DiffusionSchedule("cosine", 1000)
    t = torch.tensor([0, 250, 500, 999])
    f = lambda x: math.cos((x / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    want = torch.tensor([f(int(k) + 1) / f(0) for k in t], dtype=torch.float64)
    got = s.alphas_cumprod[t]
    assert torch.allclose(got[:3], want[:3], rtol=1e-6)
    assert got[-1] < 1e-4  # almost pure noise at T
    with pytest.raises(ValueError):
        make_betas("quadratic", 10)


def test_add_noise_preserves_unit_variance():
    s = DiffusionSchedule("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4000, 16, generator=g)
    eps = torch.randn(4000, 16, generator=g)
    xt = s.add_noise(x0, eps, torch.full((4000,), 300))
    assert xt.var().item() == pytest.approx(1.0, abs=0.03)
    ab = s.alphas_cumprod[300]
    assert torch.allclose(xt, ab.sqrt().float() * x0 + (1 - ab).sqrt().float() * eps, atol=1e-6)


def test_sr3_levels_lie_between_neighbouring_steps():
    s = DiffusionSchedule("cosine", 100)
    lv = s.sample_noise_levels(5000, torch.Generator().manual_seed(1))
    assert lv.min() >= 0 and lv.max() <= 1 and lv.std() > 0.2


@pytest.mark.parametrize("pred", ["sample", "epsilon"])
@pytest.mark.parametrize("mode", ["ddim", "ddpm"])
def test_oracle_model_recovers_the_clean_image(pred, mode):
    """With a model that knows x_0, every sampler must return x_0 (DDIM exactly; DDPM's last step too)."""
    s = DiffusionSchedule("cosine", 1000, pred)
    x0 = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))

    def oracle(inp, level):
        xt = inp[:, 1:]
        if pred == "sample":
            return x0
        g = level.reshape(-1, 1, 1, 1)
        return (xt - g * x0) / torch.sqrt(1 - g * g)

    out = sample_conditional(oracle, s, torch.zeros_like(x0), steps=7, mode=mode,
                             generator=torch.Generator().manual_seed(3))
    assert torch.allclose(out, x0, atol=1e-4)


def test_ddim_is_deterministic_and_strided():
    s = DiffusionSchedule("linear", 1000)
    s.set_timesteps(20)
    assert len(s.timesteps) == 20 and s.timesteps[0] == 999 and s.timesteps[-1] >= 0
    assert torch.all(s.timesteps[:-1] > s.timesteps[1:])

    def model(inp, level):
        return 0.5 * inp[:, :1] + 0.1 * inp[:, 1:]

    c = torch.randn(2, 1, 8, 8)
    a = sample_conditional(model, s, c, steps=10, generator=torch.Generator().manual_seed(5))
    b = sample_conditional(model, s, c, steps=10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_dihedral_samples_are_turned_back():
    """A model that returns a fixed function of its conditioning image: with the samples turned by the square's
    symmetries and turned back, an equivariant model gives the plain result, a non-equivariant one does not."""
    s = DiffusionSchedule("cosine", 1000)
    c = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(6))

    def equivariant(inp, level):  # predicts x_0 = 2 * cond
        return 2 * inp[:, :1]

    def shifted(inp, level):  # predicts x_0 = cond moved one pixel right: not equivariant
        return torch.roll(inp[:, :1], 1, -1)

    g = torch.Generator().manual_seed(7)
    out = sample_conditional(equivariant, s, c, steps=5, n_samples=8, dihedral=True, generator=g)
    assert torch.allclose(out, 2 * c, atol=1e-5)
    mixed = sample_conditional(shifted, s, c, steps=5, n_samples=8, dihedral=True, generator=g)
    plain = sample_conditional(shifted, s, c, steps=5, n_samples=8, generator=g)
    assert torch.allclose(plain, torch.roll(c, 1, -1), atol=1e-5) and not torch.allclose(mixed, plain, atol=1e-2)
