"""The model shipped in the package loads, applies out of the box, and denoises synthetic particles."""
import pytest
import torch

from genem.metrics import psnr
from genem.ops import normalize_background_pair_2d
from genem.restore.baselines import best_gaussian_lowpass
from genem.restore.model import DEFAULT_MODEL_DIR, Denoiser
from genem.restore.synthetic import blob_volume, make_pair_images

pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "model.pt").exists(), reason="no default model shipped")


def test_default_model_card_and_size():
    card = (DEFAULT_MODEL_DIR / "model_card.md").read_text()
    assert "genem denoise train" in card and "PSNR" in card
    assert (DEFAULT_MODEL_DIR / "model.pt").stat().st_size < 8e6


def _unseen_pairs(den, snr, seed):
    """16 (noisy, clean) pairs of a blob molecule not in the training data, white noise at whole-image SNR ``snr``,
    protein white as RELION's (no ice), RELION-normalised."""
    noisy, clean, _, _ = make_pair_images(5 * blob_volume(64, radius_frac=0.22, seed=77), den.pixel_size_A, 16,
                                          snr=snr, seed=seed, voltage_kV=200.0)
    return normalize_background_pair_2d(torch.from_numpy(noisy), torch.from_numpy(clean))


def test_default_model_denoises_unseen_particles():
    torch.set_num_threads(1)
    den = Denoiser.load()
    assert den.box_px == 64 and den.pixel_size_A == pytest.approx(3.54)
    n, c = _unseen_pairs(den, 0.1, seed=78)
    out = den.denoise_normalized(n, seeds=range(16))
    p_out, p_noisy = psnr(out, c).mean().item(), psnr(n, c).mean().item()
    p_zero = psnr(torch.zeros_like(c), c).mean().item()
    assert p_out > p_noisy + 10 and p_out > p_zero + 0.5


def test_default_model_not_worse_than_lowpass_without_ice():
    """Particles whose noise is only white (no ice background, whole-box SNR 0.1 and 1): the shipped model must
    beat the best Gaussian low-pass. (The first default model, trained only on data with ice, returned faint,
    over-smoothed particles here: 8 dB below the low-pass at SNR 1.)"""
    torch.set_num_threads(1)
    den = Denoiser.load()
    for snr in (0.1, 1.0):
        n, c = _unseen_pairs(den, snr, seed=79)
        p_out = psnr(den.denoise_normalized(n, seeds=range(16)), c).mean().item()
        p_lowpass = psnr(best_gaussian_lowpass(n, c)[1], c).mean().item()
        assert p_out > p_lowpass, (snr, p_out, p_lowpass)


def _count_passes(den, **kw) -> dict:
    """Network passes of one denoise_normalized call (forward hooks on both U-Nets)."""
    calls = {"diffusion": 0, "postprocess": 0}
    hooks = [getattr(den, k).register_forward_hook(lambda *a, k=k: calls.__setitem__(k, calls[k] + 1))
             for k in calls]
    den.denoise_normalized(torch.zeros(2, 64, 64), seeds=range(2), **kw)
    for h in hooks:
        h.remove()
    return calls


def test_default_route_is_two_network_passes_and_the_full_sampler_stays_reachable():
    """The shipped default route: one DDIM step (the clean-image prediction from pure noise) + the post-processor;
    --steps 10 is the full sampler (10 passes) + post-processor, --steps 0 the post-processor alone."""
    torch.set_num_threads(1)
    den = Denoiser.load()
    assert _count_passes(den) == {"diffusion": 1, "postprocess": 1}
    assert _count_passes(den, steps=10) == {"diffusion": 10, "postprocess": 1}
    assert _count_passes(den, steps=0) == {"diffusion": 0, "postprocess": 1}
    assert _count_passes(den, steps=1, postprocess=False) == {"diffusion": 1, "postprocess": 0}
