"""``genem translate train`` under ``torchrun --nproc-per-node 2`` (CPU, gloo) writes one complete model folder that
records its two ranks and global batch (genem.distributed)."""
import json

import pytest

from _support import run_torchrun
from genem.translate.model import load_model


@pytest.mark.slow
def test_two_ranks_write_one_complete_model_folder(tiny_sim, fake_real, tmp_path):
    out = tmp_path / "model"
    res = run_torchrun(["translate", "train", "--simulated", tiny_sim, "--real", *fake_real, "--out", out,
                        "--tile-px", 64, "--batch-size", 1, "--nce-patches", 32, "--base-channels", 8, "--n-blocks", 2,
                        "--steps", 3,
                        "--log-every", 1, "--grid-every", 3, "--checkpoint-every", 3, "--progress", "none"])
    assert res.stdout.count("genem translate train: wrote") == 1  # rank 0 alone tells the user
    parallel = {"world_size": 2, "batch_size_per_rank": 1, "global_batch_size": 2}
    assert json.loads((out / "model.json").read_text())["parallel"] == parallel
    assert json.loads((out / "config.json").read_text())["parallel"] == parallel
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_000003.pt"]
    assert (out / "samples" / "step_000003.png").is_file() and len(list((out / "heldout").glob("*.mrc"))) == 2
    log = (out / "loss_log.tsv").read_text().splitlines()
    assert len(log) == 4 and log[-1].startswith("3\t")  # one header, one line per step, written once
    load_model(out / "model.pt")


@pytest.mark.slow
def test_two_ranks_stop_together_when_rank_0_decides(tiny_sim, fake_real, tmp_path):
    """An early stop is rank 0's decision (time limit here, validation otherwise); every rank must stop at the same
    step, or the others would wait forever in the next step's all-reduce."""
    out = tmp_path / "model"
    run_torchrun(["translate", "train", "--simulated", tiny_sim, "--real", *fake_real, "--out", out, "--tile-px", 64,
                  "--batch-size", 1, "--nce-patches", 32, "--base-channels", 8, "--n-blocks", 2, "--steps", 50,
                  "--time-limit-min", 0.001, "--progress", "none"], timeout=240)
    meta = json.loads((out / "model.json").read_text())
    assert meta["steps"] == 1 and meta["stop_reason"].startswith("time limit")
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_000001.pt"]
