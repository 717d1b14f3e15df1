"""``genem pick train`` under ``torchrun --nproc-per-node 2`` (CPU, gloo) writes one complete picker folder that
records its two ranks and global batch (genem.distributed)."""
import json

import pytest

from _support import run_torchrun
from genem.pick import Picker
from genem.simulate import SimulationConfig, run_simulation


@pytest.mark.slow
def test_two_ranks_write_one_complete_picker(tmp_path, one_torch_thread):
    data = run_simulation(SimulationConfig(n_micrographs=2, micrograph_size_px=(192, 192), pixel_size_A=6.0,
                                           particle_box_px=32, particles_per_micrograph=8, ice="none",
                                           noise_mode="snr", snr=0.5, seed=1), tmp_path / "sim")
    out = tmp_path / "picker"
    run_torchrun(["pick", "train", "--data", data, "--out", out, "--steps", 4, "--batch-size", 2, "--width", 8,
                  "--log-every", 1, "--checkpoint-every", 2, "--progress", "none"])
    meta = json.loads((out / "picker.json").read_text())
    assert meta["training"]["parallel"] == {"world_size": 2, "batch_size_per_rank": 2, "global_batch_size": 4}
    assert 0 < meta["threshold"] < 1
    assert (out / "loss.tsv").read_text().count("\n") == 5
    Picker.load(out)
