"""The denoiser under ``torchrun --nproc-per-node 2`` (CPU, gloo) is the same run as one process with the global
batch: the same loss curve and final weights within float tolerance, also when a run is resumed on another number
of ranks (genem.distributed)."""
import json

import pytest
import torch

from _support import run_torchrun
from genem.restore import Denoiser, TrainConfig, train_denoiser

TINY = dict(steps=6, post_steps=3, crop_px=16, base_channels=4, post_base_channels=4, channel_mults=(1, 2),
            post_train_images=70, sample_steps=2, num_train_timesteps=50, checkpoint_every=3,
            lr_decay="constant")  # a cosine curve depends on the total steps: a run stopped at 3 of 3 is another run
FLAGS = ["--post-steps", 3, "--crop", 16, "--channels", 4, "--post-channels", 4, "--channel-mults", "1,2",
         "--post-train-images", 70, "--sample-steps", 2, "--timesteps", 50, "--checkpoint-every", 3,
         "--lr-decay", "constant", "--progress", "none"]


def _live(net: torch.nn.Module, *inputs) -> set:
    """Parameters the output depends on. A conv bias followed by a one-channel-per-group GroupNorm has a gradient
    that is zero up to rounding; Adam scales that rounding noise to lr-sized steps, so such a weight differs between
    any two summation orders (one process or two ranks) without changing the network's function."""
    net.zero_grad()
    net(*inputs).square().mean().backward()
    return {k for k, p in net.named_parameters() if p.grad.abs().max() > 1e-6}


def _same_run(a, b):
    ja, jb = (json.loads((d / "train.json").read_text()) for d in (a, b))
    assert ja["losses"] == pytest.approx(jb["losses"], rel=1e-5) and len(ja["losses"]) == 6
    assert ja["post_losses"] == pytest.approx(jb["post_losses"], rel=1e-5) and len(ja["post_losses"]) == 3
    x = torch.randn(4, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    da, db = (Denoiser.load(d) for d in (a, b))
    live = {"diffusion": _live(da.diffusion.float(), x, torch.rand(4)),
            "postprocess": _live(da.postprocess.float(), x[:, :1], x[:, 1:])}
    for ck, names in live.items():  # the float32 checkpoints: raw weights (and the diffusion EMA)
        assert len(names) > 20
        ca, cb = (torch.load(d / "checkpoints" / f"{ck}.pt", weights_only=False) for d in (a, b))
        for kind in ("model", "ema") if ck == "diffusion" else ("model",):
            for k in names:
                torch.testing.assert_close(cb[kind][k], ca[kind][k], rtol=1e-4, atol=1e-5)
    noisy = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(db.denoise_normalized(noisy, steps=2, seed=0), da.denoise_normalized(noisy, steps=2, seed=0),
                               rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_two_ranks_equal_one_process_with_the_global_batch(pair_dataset, tmp_path, one_torch_thread):
    one = train_denoiser([pair_dataset], tmp_path / "one", TrainConfig(batch_size=4, **TINY)).parent
    run_torchrun(["denoise", "train", "--data", pair_dataset, "--out", tmp_path / "two", "--steps", 6,
                  "--batch-size", 2, *FLAGS])
    two = tmp_path / "two"
    assert json.loads((two / "model.json").read_text())["meta"]["parallel"] == \
        {"world_size": 2, "batch_size_per_rank": 2, "global_batch_size": 4}
    _same_run(one, two)
    # stopped after 3 steps in one process, resumed on two ranks with the same global batch: the same run
    part = train_denoiser([pair_dataset], tmp_path / "part", TrainConfig(batch_size=4, **{**TINY, "steps": 3}))
    run_torchrun(["denoise", "train", "--data", pair_dataset, "--out", part.parent, "--steps", 6,
                  "--batch-size", 2, "--resume", *FLAGS])
    _same_run(one, part.parent)
