"""A seeded tiny training run that must measurably learn on 2 CPU cores in about a minute."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genem.io import GenemInputError
from genem.metrics import psnr
from genem.restore.model import Denoiser
from genem.restore.synthetic import blob_volume, write_pair_dataset
from genem.restore.train import TrainConfig, _split, architecture_of, learning_rate, load_training_pairs, train_denoiser

ROOT = Path(__file__).resolve().parents[2]
TINY = TrainConfig(steps=120, post_steps=40, batch_size=16, crop_px=32, base_channels=8, post_base_channels=4,
                   channel_mults=(1, 2), num_train_timesteps=200, post_train_images=64, sample_steps=4,
                   val_fraction=0.15, checkpoint_every=60, lr=2e-3, seed=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "ds"
    return write_pair_dataset(root, blob_volume(32, seed=5), 4.0, 240, snr=0.1, seed=6, per_stack=80)


def _held_out(data):
    """(noisy, clean) of the particles that training with TINY's seed and val_fraction set aside for validation."""
    pairs = load_training_pairs([data])
    val = _split(pairs, TINY)[1]
    return pairs.noisy[val], pairs.clean[val]


@pytest.fixture(scope="module")
def tiny_trained(train_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "m"
    train_denoiser([train_data], out, TINY)
    return out


def test_tiny_run_learns(train_data, tiny_trained):
    meta = json.loads((tiny_trained / "train.json").read_text())
    assert meta["final_loss"] < 0.7 * meta["first_loss"]
    # held-out particles: the denoiser beats both the noisy input and the best constant (zero) prediction
    noisy, clean = _held_out(train_data)
    den = Denoiser.load(tiny_trained)
    out = den.denoise_normalized(noisy, steps=4)
    p_out = psnr(out, clean).mean().item()
    p_zero = psnr(torch.zeros_like(clean), clean).mean().item()
    assert p_out > psnr(noisy, clean).mean().item() + 8
    assert p_out > p_zero + 1.0
    assert meta["val_metrics"]["psnr_diffusion_dB"] > meta["val_metrics"]["psnr_noisy_dB"] + 8


def _val_psnr(model_dir, data) -> float:
    noisy, clean = _held_out(data)
    out = Denoiser.load(model_dir).denoise_normalized(noisy, steps=4, seed=1)
    return psnr(out, clean).mean().item()


def test_fine_tuning_starts_from_the_model_and_adapts_to_new_data(tiny_trained, tmp_path):
    # another specimen: a larger molecule at a higher SNR than the tiny model was trained on
    other = write_pair_dataset(tmp_path / "other", blob_volume(32, n_blobs=30, radius_frac=0.4, seed=21), 4.0, 160,
                               snr=0.4, seed=22, per_stack=80)
    start = Denoiser.load(tiny_trained)
    # the architecture comes from the starting model, whatever the config says
    cfg = TINY.replace(steps=30, post_steps=20, base_channels=4, post_base_channels=8, lr=1e-3)
    train_denoiser([other], tmp_path / "ft", cfg, init=start)
    ft = Denoiser.load(tmp_path / "ft")
    assert ft.diffusion.config == start.diffusion.config and ft.postprocess.config == start.postprocess.config
    assert ft.target_scale == start.target_scale
    meta = json.loads((tmp_path / "ft" / "train.json").read_text())
    assert meta["started_from"]["weights_digest"] == start.weights_digest() == meta["train_config"]["init_digest"]
    # it learns the new data from where the start left off: on held-out particles of it, better than the start
    # and better than a run of the same length from scratch
    train_denoiser([other], tmp_path / "scratch", cfg.replace(**architecture_of(start)))
    p_ft, p_start, p_scratch = (_val_psnr(m, other) for m in (tmp_path / "ft", tiny_trained, tmp_path / "scratch"))
    print(f"fine-tuned {p_ft:.2f} dB, start {p_start:.2f} dB, same steps from scratch {p_scratch:.2f} dB")
    assert p_ft > p_start + 0.3 and p_ft > p_scratch + 0.3
    # a model made for another pixel size cannot be the start
    wrong = write_pair_dataset(tmp_path / "wrong", blob_volume(32, seed=5), 3.0, 20, snr=0.1, seed=6)
    with pytest.raises(GenemInputError, match="pixel size") as e:
        train_denoiser([wrong], tmp_path / "ft2", cfg, init=start)
    assert "wrong" in str(e.value) and not (tmp_path / "ft2" / "model.pt").exists()
    # a resumed fine-tuning must start from the same model
    with pytest.raises(GenemInputError, match="settings"):
        train_denoiser([other], tmp_path / "ft", cfg.replace(steps=40), resume=True)


def test_post_processor_retrained_for_another_route_keeps_the_diffusion_network(tiny_trained, train_data, tmp_path):
    """--steps 0 with --init: the diffusion network is the start's, bit for bit; the post-processor is retrained on
    the outputs of --sample-steps DDIM steps and becomes the model's default route, which it serves better than
    the start's post-processor (trained after 4 steps) does; without --init, 0 steps is an error."""
    start = Denoiser.load(tiny_trained)
    cfg = TINY.replace(steps=0, post_steps=60, sample_steps=1, lr=1e-3)
    train_denoiser([train_data], tmp_path / "one", cfg, init=start)
    one = Denoiser.load(tmp_path / "one")
    assert all(torch.equal(a, b) for a, b in zip(one.diffusion.state_dict().values(),
                                                  start.diffusion.state_dict().values()))
    assert one.default_steps == 1 and json.loads((tmp_path / "one" / "train.json").read_text())["losses"] == []
    noisy, clean = _held_out(train_data)
    p_one, p_start = (psnr(m.denoise_normalized(noisy, steps=1, seed=1), clean).mean().item() for m in (one, start))
    print(f"1 step + retrained post {p_one:.2f} dB, 1 step + the post trained after 4 steps {p_start:.2f} dB")
    assert p_one > p_start
    with pytest.raises(GenemInputError, match="--init"):
        train_denoiser([train_data], tmp_path / "none", cfg)
    with pytest.raises(ValueError):
        TINY.replace(steps=0, post_steps=0)


def test_resume_continues_exactly(train_data, tmp_path):
    # a run given more steps on resume: constant lr, so that it equals one run of the longer length
    cfg = TINY.replace(steps=30, post_steps=0, checkpoint_every=15, lr_decay="constant")
    train_denoiser([train_data], tmp_path / "a", cfg.replace(steps=15))
    with pytest.raises(GenemInputError, match="resume|another"):
        train_denoiser([train_data], tmp_path / "a", cfg)
    train_denoiser([train_data], tmp_path / "a", cfg, resume=True)
    train_denoiser([train_data], tmp_path / "b", cfg)
    a, b = Denoiser.load(tmp_path / "a"), Denoiser.load(tmp_path / "b")
    for (k, va), vb in zip(a.diffusion.state_dict().items(), b.diffusion.state_dict().values()):
        assert torch.equal(va, vb), k
    with pytest.raises(GenemInputError, match="settings"):
        train_denoiser([train_data], tmp_path / "a", cfg.replace(lr=0.1), resume=True)


def test_train_cli_and_bad_data(train_data, tmp_path):
    r = subprocess.run([sys.executable, "-m", "genem", "denoise", "train", "--data", str(train_data), "--out",
                        str(tmp_path / "cli"), "--steps", "3", "--post-steps", "2", "--channels", "4",
                        "--post-channels", "4", "--crop", "16", "--sample-steps", "2", "--timesteps", "50",
                        "--no-progress", "--threads", "1"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    info = json.loads((tmp_path / "cli" / "model.json").read_text())
    assert info["pixel_size_A"] == pytest.approx(4.0) and info["box_px"] == 32
    r = subprocess.run([sys.executable, "-m", "genem", "denoise", "train", "--data", str(train_data), "--out",
                        str(tmp_path / "cli_ft"), "--init", str(tmp_path / "cli"), "--steps", "2", "--post-steps", "2",
                        "--crop", "16", "--no-progress", "--threads", "1"], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    ft = json.loads((tmp_path / "cli_ft" / "model.json").read_text())
    assert ft["meta"]["started_from"]["model"] == str(tmp_path / "cli" / "model.pt")
    assert ft["diffusion_config"] == info["diffusion_config"]
    r = subprocess.run([sys.executable, "-m", "genem", "denoise", "train", "--data", str(tmp_path / "nothing"),
                        "--out", str(tmp_path / "cli2")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode != 0 and r.stderr.strip().startswith("genem: error:") and not (tmp_path / "cli2").exists()


def test_cosine_learning_rate_falls_from_lr_to_five_percent():
    cfg = TINY.replace(lr=1e-3)
    lrs = [learning_rate(cfg, s, 100) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[100] == pytest.approx(5e-5) and lrs[50] == pytest.approx(5.25e-4)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert learning_rate(cfg.replace(lr_decay="constant"), 70, 100) == 1e-3
    with pytest.raises(ValueError, match="lr_decay"):
        TINY.replace(lr_decay="step")
