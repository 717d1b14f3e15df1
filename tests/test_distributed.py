"""genem.distributed in one process: a run of one rank is a plain run (the trainers' multi-rank runs are tested
under torchrun in tests/restore, tests/translate and tests/pick)."""

import torch

from genem.distributed import Ranks, global_settings, join


def test_one_process_is_rank_zero_of_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    r = join("cpu")
    assert (r.rank, r.world_size, r.writer, r.parallel) == (0, 1, True, False)
    net = torch.nn.Linear(2, 2)
    assert r.wrap(net) is net
    assert r.mean(1.5, 2) == [1.5, 2.0]
    assert r.map_chunks(lambda i: i * i, 4) == [0, 1, 4, 9]
    assert r.record(8) == {"world_size": 1, "batch_size_per_rank": 8, "global_batch_size": 8}


def test_each_rank_takes_its_slice_of_the_global_batch():
    batch = torch.arange(12).reshape(6, 2)
    slices = [Ranks(rank=k, world_size=3).take(batch) for k in range(3)]
    assert torch.equal(torch.cat(slices), batch) and all(len(s) == 2 for s in slices)
    x, = Ranks(rank=1, world_size=2).local_batch(batch)
    assert torch.equal(x, batch[3:])


def test_resume_settings_keep_the_global_batch():
    cfg = {"batch_size": 4, "lr": 1e-3}
    assert global_settings(cfg, 2) == global_settings({**cfg, "batch_size": 8}, 1) == {"batch_size": 8, "lr": 1e-3}
    assert global_settings(cfg, 2) != global_settings(cfg, 1)
