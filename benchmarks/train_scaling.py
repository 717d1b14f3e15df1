"""Data-parallel scaling of training on CPU ranks: the denoiser's diffusion stage under ``torchrun``.

    python benchmarks/train_scaling.py [--batch 8] [--steps 25] [--warmup 5] [--json out.json]

Each row is one ``torchrun --standalone`` run of ``train_denoiser`` (default networks, 48 px crops, synthetic
box-64 pairs); throughput is training samples/s (global batch x steps/s) between step ``--warmup`` and the last,
timed by the trainer's progress events on rank 0. Rows, each against the first (the baseline):

  1 rank  x 1 thread,  batch B        baseline
  2 ranks x 1 thread,  batch B each   weak scaling: twice the global batch on twice the cores
  1 rank  x 2 threads, batch 2B       the same work on the same two cores, as threads instead of ranks
  2 ranks x 1 thread,  batch B/2 each strong scaling: the baseline's global batch on two cores

The numbers depend on what else the machine runs at the time; the script prints the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genem.cli.main import PROCESS_ENV  # noqa: E402  (idle OpenMP threads sleep: the CLI's process settings)


def worker(data: str, out: str, batch: int, steps: int, warmup: int) -> None:
    """Run under torchrun: train, and on rank 0 print the samples/s of the steps after ``warmup``."""
    from genem.distributed import join
    from genem.restore import TrainConfig, train_denoiser

    ranks = join("cpu")
    times = {}

    def progress(ev):
        if ev.task == "diffusion":
            times[ev.done] = time.perf_counter()

    cfg = TrainConfig(steps=steps, post_steps=0, batch_size=batch, val_fraction=0.0, checkpoint_every=steps)
    train_denoiser([data], out, cfg, progress=progress)
    if ranks.writer:
        rate = (steps - warmup) / (times[steps] - times[warmup])
        print(json.dumps({"steps_per_s": rate, "samples_per_s": rate * batch * ranks.world_size}), flush=True)


def run(data: Path, work: Path, ranks: int, threads: int, batch: int, steps: int, warmup: int) -> dict:
    out = work / f"r{ranks}_t{threads}_b{batch}"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.update({k: v for k, v in PROCESS_ENV.items() if k not in os.environ})  # as the genem CLI runs
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", __file__,
           "--worker", str(data), str(out), "--batch", str(batch), "--steps", str(steps), "--warmup", str(warmup)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr[-3000:])
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1]
    return {"ranks": ranks, "threads_per_rank": threads, "batch_per_rank": batch, **json.loads(line)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--worker", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker, args.batch, args.steps, args.warmup)
        return 0
    from genem.restore.synthetic import blob_volume, write_pair_dataset

    b = args.batch
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = write_pair_dataset(work / "pairs", blob_volume(64, seed=3), 4.0, 200, snr=0.1, seed=4)
        print(f"load average before: {os.getloadavg()}")
        rows = [run(data, work, r, t, bb, args.steps, args.warmup) for r, t, bb in
                ((1, 1, b), (2, 1, b), (1, 2, 2 * b), (2, 1, b // 2))]
        print(f"load average after: {os.getloadavg()}")
    base = rows[0]["samples_per_s"]
    print(f"denoiser training, 48 px crops, default networks, {os.cpu_count()} CPU cores; samples/s (x baseline)")
    for row in rows:
        row["speedup"] = row["samples_per_s"] / base
        print(f"  {row['ranks']} rank(s) x {row['threads_per_rank']} thread(s), batch {row['batch_per_rank']} per rank "
              f"(global {row['ranks'] * row['batch_per_rank']}): {row['samples_per_s']:.2f} samples/s "
              f"({row['speedup']:.2f}x), {row['steps_per_s']:.3f} steps/s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
