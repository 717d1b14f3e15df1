"""Data-parallel training under ``torchrun`` (torch.distributed): one process ("rank") per device, gloo on CPU,
NCCL on CUDA. The trainers (``train_denoiser``, ``train_translator``, ``train_picker``) call :func:`join` and run
unchanged as one process or as N ranks; ``torchrun`` sets the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) that :func:`join` reads.

The equivalence rule: **N ranks with per-rank batch B are one process with batch N*B.** Every rank draws the
*global* batch's randomness (which samples, crops, rotations, noise, timesteps) from the run's one generator, seeded
by the run seed, in exactly the order a single process with batch N*B draws it, and keeps its own slice
(``rank*B .. rank*B+B``, :meth:`Ranks.take`): a distributed sampler whose shard of every batch is derived from the
run seed and the rank. Gradients are averaged over the ranks (DDP, or :meth:`Ranks.average_gradients` where a
trainer calls its networks outside ``forward``), so a loss that is a mean over the batch's samples gets the gradient
of the global batch. Logged losses are averaged over ranks. Because the generator state is the same on every rank,
a checkpoint holds one state and a run resumes on any number of ranks that keeps the global batch.

Rank 0 alone writes (checkpoints, logs, samples, the model); the others wait at :meth:`Ranks.barrier`. Each rank
reads the training data itself (memory: N copies on one node).
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = ["Ranks", "join", "global_settings", "is_writer_process"]

#: how long a rank waits in a collective: the other ranks wait at a barrier while rank 0 alone evaluates and writes
#: the model (minutes on a CPU for a large validation set), longer than torch's default of 30 min would allow
COLLECTIVE_TIMEOUT = timedelta(hours=3)


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run and its device (``Ranks()``: one process on the CPU)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def writer(self) -> bool:
        """Whether this rank writes the run's files (rank 0)."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    def take(self, batch):
        """This rank's slice of a global batch (leading dimension N*B, N = world size): items rank*B .. rank*B+B."""
        n = batch.shape[0] // self.world_size
        return batch[self.rank * n:(self.rank + 1) * n]

    def local_batch(self, *tensors: torch.Tensor) -> tuple:
        """This rank's slices of global-batch CPU tensors, on the rank's device (on CUDA through pinned memory
        with non-blocking copies, so the copy overlaps the previous step's kernels)."""
        if self.device.type != "cuda":
            return tuple(self.take(t).to(self.device) for t in tensors)
        return tuple(self.take(t).contiguous().pin_memory().to(self.device, non_blocking=True) for t in tensors)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` for the forward passes of training: DistributedDataParallel when there are several ranks
        (its gradients are averaged during ``backward``); the module itself otherwise. Weights are saved from
        ``module``, never from the wrapper."""
        if not self.parallel:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[self.device] if self.device.type == "cuda" else None)

    def average_gradients(self, *modules: torch.nn.Module) -> None:
        """Average the parameters' gradients over the ranks (one all-reduce of a flat buffer): what DDP does, for
        trainers that call a network several times or through methods other than ``forward`` before ``backward``."""
        if not self.parallel:
            return
        grads = [p.grad for m in modules for p in m.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        i = 0
        for g in grads:
            g.copy_(flat[i:i + g.numel()].view_as(g))
            i += g.numel()

    def broadcast_parameters(self, *modules: torch.nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers (after loading weights or a checkpoint)."""
        if not self.parallel:
            return
        with torch.no_grad():
            for m in modules:
                for t in list(m.parameters()) + list(m.buffers()):
                    dist.broadcast(t.data, 0)

    def mean(self, *values: float) -> list[float]:
        """The mean over ranks of each number (a logged loss: the global batch's mean when slices are equal)."""
        if not self.parallel:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return [float(v) / self.world_size for v in t.cpu()]

    def map_chunks(self, fn, n_chunks: int) -> list:
        """``[fn(0), ..., fn(n_chunks - 1)]`` with the chunks shared round-robin between ranks, every rank
        receiving all results (CPU tensors or other picklable values). ``fn(i)`` must not depend on the rank."""
        if not self.parallel:
            return [fn(i) for i in range(n_chunks)]
        mine = {i: fn(i) for i in range(self.rank, n_chunks, self.world_size)}
        gathered: list = [None] * self.world_size
        dist.all_gather_object(gathered, mine)
        merged = {k: v for part in gathered for k, v in part.items()}
        return [merged[i] for i in range(n_chunks)]

    def from_writer(self, value):
        """Rank 0's ``value`` (any picklable object) on every rank: a decision taken by rank 0 alone, such as
        stopping early, must be the same on all ranks or the others wait forever in the next collective."""
        if not self.parallel:
            return value
        box = [value]
        dist.broadcast_object_list(box, 0)
        return box[0]

    def barrier(self) -> None:
        if self.parallel:
            dist.barrier()

    def record(self, batch_size: int) -> dict:
        """What a model folder's JSON records about the run's parallelism."""
        return {"world_size": self.world_size, "batch_size_per_rank": int(batch_size),
                "global_batch_size": int(batch_size) * self.world_size}


def join(device="cpu") -> Ranks:
    """This process's :class:`Ranks` on ``device``. Under ``torchrun`` (``WORLD_SIZE`` > 1) it joins the process
    group (NCCL for a CUDA ``device``, gloo otherwise; idempotent; left at exit) and a ``cuda`` device without an
    index becomes ``cuda:LOCAL_RANK`` (one GPU per rank); a plain process is rank 0 of 1."""
    dev = torch.device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks(device=dev)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local)
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
        atexit.register(_leave)
    return Ranks(dist.get_rank(), dist.get_world_size(), local, dev)


def is_writer_process() -> bool:
    """Whether this process is rank 0 of a torchrun job, or a plain process: the one that tells the user what was
    written (before or after the process group exists)."""
    return int(os.environ.get("RANK", "0")) == 0


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def global_settings(config: dict, world_size: int) -> dict:
    """A training config (dict with a per-rank ``batch_size``) as the settings a resume must keep: the global
    batch instead of the per-rank one, so a run resumes on another number of ranks with the same global batch."""
    return {**config, "batch_size": int(config["batch_size"]) * int(world_size)}
