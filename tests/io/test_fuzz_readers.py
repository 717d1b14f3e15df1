"""Seeded fuzzing of every reader and of the command-line entry points (tools/fuzz_readers.py, ~1 minute): mutated
MRC, STAR, .cs, PDB/mmCIF, PNG/TIFF inputs end in GenemInputError (exit 2 with one ``genem: error:`` line for a
command) or are read; never another exception, a hang or an allocation beyond the memory limit."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mutated_inputs_give_clean_errors_only(tmp_path):
    counts = tmp_path / "counts.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins" / "cryosparc"),
                                          os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "fuzz_readers.py"), "--per-reader", "100",
                        "--per-command", "8", "--seed", "18", "--json", str(counts)],
                       capture_output=True, text=True, timeout=300, env=env)
    res = json.loads(counts.read_text())
    assert not res["failures"], json.dumps(res["failures"][:5], indent=1)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(res["readers"]) == 10 and len(res["commands"]) == 6
    for group in ("readers", "commands"):
        for name, c in res[group].items():
            assert c["other"] == 0 and c["clean"] + c["accepted"] == c["inputs"] > 0, (name, c)
            assert c["clean"] > 0, name  # the mutations do reach the checks
