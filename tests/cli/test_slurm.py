"""``genem simulate --emit-slurm``: the script's jobs, run here through a stand-in ``sbatch`` in shuffled order
with one shard rerun and the merge tried too early, give a dataset byte-identical to a one-process run."""
import filecmp
import json
import os
import subprocess
from pathlib import Path

import pytest

from _support import ROOT
from genem.cli.main import main

FAKE_SBATCH = """#!/bin/bash
# records each submitted job (script from stdin, options) and answers like `sbatch --parsable`
n=$(( $(ls "$FAKE_SLURM" | grep -c '[.]sh$') + 1 ))
cat > "$FAKE_SLURM/$n.sh"
printf '%s\\n' "$@" > "$FAKE_SLURM/$n.args"
echo "$n;cluster"
"""
SIM = ["--n-micrographs", "4", "--micrograph-size", "160", "--pixel-size-A", "4", "--box", "32", "--particles", "3",
       "--ice", "none", "--seed", "5"]


def _files(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_slurm_array_in_any_order_with_a_rerun_equals_a_full_run(tmp_path, one_torch_thread):
    bin_dir, jobs = tmp_path / "bin", tmp_path / "jobs"
    bin_dir.mkdir()
    jobs.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_SLURM=str(jobs),
               OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    sharded = tmp_path / "sharded"
    assert main(["simulate", *SIM, "--out", str(sharded), "--emit-slurm", str(tmp_path / "sim.sh"), "--shards", "4",
                 "--sbatch=--partition=gpu"]) == 0
    assert not sharded.exists()  # emitting simulates nothing
    subprocess.run(["bash", str(tmp_path / "sim.sh")], env=env, check=True, capture_output=True)
    args = [(jobs / f"{k}.args").read_text().split() for k in (1, 2)]
    assert "--array=0-3" in args[0] and "--dependency=afterok:1" in args[1]
    assert all("#SBATCH --partition=gpu" in (jobs / f"{k}.sh").read_text() for k in (1, 2))

    def job(k, task=None):
        e = dict(env, SLURM_ARRAY_TASK_ID=str(task)) if task is not None else env
        return subprocess.run(["bash", str(jobs / f"{k}.sh")], env=e, capture_output=True, text=True)

    for task in (2, 0, 3):
        assert job(1, task).returncode == 0
    early = job(2)
    assert early.returncode == 2 and "1 of 4 micrographs not done yet (index 1)" in early.stderr
    assert not (sharded / "manifest.json").exists()
    for task in (1, 2):  # the last shard, then a rerun of a finished one
        assert job(1, task).returncode == 0
    assert job(2).returncode == 0

    full = tmp_path / "full"
    assert main(["simulate", "--config", str(tmp_path / "sim.config.json"), "--out", str(full)]) == 0
    files = _files(full)
    assert files == _files(sharded) and "particles.star" in files and "Micrographs/mic_000003.mrc" in files
    for rel in sorted(files - {"manifest.json"}):
        assert filecmp.cmp(full / rel, sharded / rel, shallow=False), rel
    m_full, m_sharded = (json.loads((d / "manifest.json").read_text()) for d in (full, sharded))
    for m in (m_full, m_sharded):  # what differs by design: how and how long the last step ran
        del m["command_line"], m["wall_time_s_last_shard"]
    assert m_full == m_sharded
