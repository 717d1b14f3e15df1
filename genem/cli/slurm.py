"""The SLURM launcher of a sharded simulation (``genem simulate ... --emit-slurm SCRIPT --shards N``).

The script submits two jobs with ``sbatch``: an array of N tasks, task i running ``genem simulate --config CONFIG
--out OUT --shard i/N``, and, once every task has succeeded (``--dependency=afterok``), the merge,
``genem simulate --out OUT --merge``, which writes the tables and ``manifest.json``. Micrograph k is done by shard
k % N and depends only on (seed, k): tasks run in any order and on any node, a failed or preempted one is rerun
as it is (``sbatch --array=i SCRIPT``-style or by hand), and the result is byte-identical to a one-process run.
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from genem.io import write_json_atomic, write_text_atomic

TEMPLATE = """#!/bin/bash
# GenEM simulation on a SLURM cluster: {n} shards as one job array, then the merge once all of them succeeded.
# Written by `genem simulate --emit-slurm`. Submit it with:  bash {script}
# Add #SBATCH lines for your site (partition, time, memory; --gres=gpu:1 with --device cuda) with --sbatch OPTION.
# A shard that failed is rerun by hand with the command of the array job below (SLURM_ARRAY_TASK_ID=i); the merge
# refuses, naming the missing micrographs, until every shard is done. Rerunning a finished shard changes nothing.
set -euo pipefail
cd {cwd}
array_job=$(sbatch --parsable --array=0-{last} <<'GENEM_SHARDS'
#!/bin/bash
#SBATCH --job-name=genem-simulate
{sbatch}cd {cwd}
{python} -m genem simulate --config {config} --out {out} --shard "${{SLURM_ARRAY_TASK_ID}}/{n}" --device {device} --progress lines
GENEM_SHARDS
)
array_job=${{array_job%%;*}}
sbatch --parsable --dependency=afterok:"$array_job" <<'GENEM_MERGE'
#!/bin/bash
#SBATCH --job-name=genem-simulate-merge
{sbatch}cd {cwd}
{python} -m genem simulate --out {out} --merge
GENEM_MERGE
"""


def write_slurm_script(script, config, out_dir, n_shards: int, *, device: str = "cpu", sbatch=()) -> Path:
    """Write the launcher ``script`` (executable) and the simulation's configuration beside it
    (``<script stem>.config.json``); nothing is simulated. Paths in the script are absolute."""
    script = Path(script).resolve()
    cfg_path = script.with_name(script.stem + ".config.json")
    write_json_atomic(cfg_path, json.loads(json.dumps(config.to_dict())))
    q = shlex.quote
    text = TEMPLATE.format(n=n_shards, last=n_shards - 1, script=q(str(script)), cwd=q(str(Path.cwd())),
                           sbatch="".join(f"#SBATCH {opt}\n" for opt in sbatch), python=q(sys.executable),
                           config=q(str(cfg_path)), out=q(str(Path(out_dir).resolve())), device=q(device))
    write_text_atomic(script, text)
    script.chmod(0o755)
    return script
