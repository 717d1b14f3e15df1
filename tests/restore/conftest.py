import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from genem.restore.model import Denoiser
from genem.restore.postprocess import PostProcessor, postprocess_config
from genem.restore.schedule import DiffusionSchedule
from genem.restore.synthetic import blob_volume, write_pair_dataset
from genem.restore.unet import UNet, UNetConfig


@pytest.fixture(scope="session")
def pair_dataset(tmp_path_factory):
    """30 particle pairs, box 32 at 4 A/px, 3 stacks of 10."""
    root = tmp_path_factory.mktemp("pairs") / "ds"
    return write_pair_dataset(root, blob_volume(32, seed=3), 4.0, 30, snr=0.1, seed=4, per_stack=10)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """An untrained, tiny denoiser at 4 A/px (enough to test I/O paths)."""
    torch.manual_seed(0)
    diff = UNet(UNetConfig(base_channels=4, channel_mults=(1, 2)))
    post = PostProcessor(postprocess_config(4, (1, 2)))
    den = Denoiser(diff.eval(), DiffusionSchedule("cosine", 100), post.eval(), 4.0, 32, 2.0, default_steps=3,
                   meta={"name": "tiny-test"})
    folder = tmp_path_factory.mktemp("model") / "tiny"
    den.save(folder)
    return folder


def tree_digest(folder) -> str:
    """Hash of every file's name and content under ``folder`` (to prove inputs are untouched)."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def digest():
    return tree_digest
