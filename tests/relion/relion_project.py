"""Drive Debian's real RELION 3.1.3 pipeliner from tests: a project in a folder, External jobs added with
``relion_pipeliner --addJob``, run with ``--RunJobs``, their status read back from ``default_pipeline.star``."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from genem.io import read_star

ROOT = Path(__file__).resolve().parents[2]
STATUS = {0: "running", 1: "scheduled", 2: "finished", 3: "failed", 4: "aborted"}
#: Files RELION's own pipeliner writes at the project top level (everything else must stay in the job folder).
RELION_BOOKKEEPING = ("default_pipeline.star", ".pipeline_has_changed", ".Nodes", ".relion_lock", ".gui_")


def write_wrapper(folder: Path, module: str) -> Path:
    """RELION's fn_exe must be one executable: a script that runs ``python -m <module>`` with this checkout."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / module.split(".")[-1].replace("_", "-")
    pythonpath = os.pathsep.join([str(ROOT / "plugins" / "relion"), str(ROOT)])
    path.write_text(f"#!/bin/sh\nexport PYTHONPATH='{pythonpath}'\nexec '{sys.executable}' -m {module} \"$@\"\n")
    path.chmod(0o755)
    return path


class RelionProject:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "default_pipeline.star").write_text(
            "\n# version 30001\n\ndata_pipeline_general\n\n_rlnPipeLineJobCounter 1\n\n")

    def _pipeliner(self, *args, timeout=300):
        r = subprocess.run(["relion_pipeliner", *args], cwd=self.root, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"relion_pipeliner {args} failed: {r.stdout[-1000:]} {r.stderr[-1000:]}"
        return r

    def processes(self) -> dict:
        blocks = read_star(self.root / "default_pipeline.star")
        if "pipeline_processes" not in blocks:
            return {}
        df = blocks["pipeline_processes"]
        return dict(zip(df["rlnPipeLineProcessName"], df["rlnPipeLineProcessStatus"].astype(int)))

    def add_job(self, job_type: str, options: dict) -> str:
        """``relion_pipeliner --addJob``; returns the new job's name (``External/job001/``)."""
        before = set(self.processes())
        text = ";".join(f"{k} == {v}" for k, v in options.items())
        self._pipeliner("--addJob", job_type, "--addJobOptions", text)
        new = [p for p in self.processes() if p not in before]
        assert len(new) == 1, new
        return new[0]

    def add_external(self, exe: Path, *, inputs: dict | None = None, params: dict | None = None,
                     threads: int = 1, queue: dict | None = None) -> str:
        """An External job. ``inputs`` use the GUI field names (in_mic, in_part, in_3dref...); ``queue`` the Running
        tab's queue fields (do_queue, qsub, qsubscript, queuename, qsub_extra1...)."""
        opts = {"fn_exe": str(exe), **(inputs or {}), **(queue or {})}
        for i, (label, value) in enumerate((params or {}).items(), start=1):
            assert i <= 10, "RELION's External job has 10 parameter slots"
            opts[f"param{i}_label"] = label
            opts[f"param{i}_value"] = value
        opts["nr_threads"] = threads
        return self.add_job("External", opts)

    def run(self, job: str, timeout=300) -> str:
        self._pipeliner("--RunJobs", job, "--sec_wait_after", "1", timeout=timeout)
        return self.status(job)

    def start(self, job: str) -> subprocess.Popen:
        return subprocess.Popen(["relion_pipeliner", "--RunJobs", job, "--sec_wait_after", "1"], cwd=self.root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def status(self, job: str) -> str:
        return STATUS[self.processes()[job]]

    def nodes(self) -> dict:
        """Every node of the pipeline: {name: type}."""
        df = read_star(self.root / "default_pipeline.star")["pipeline_nodes"]
        return dict(zip(df["rlnPipeLineNodeName"], df["rlnPipeLineNodeType"].astype(int)))

    def output_nodes(self, job: str) -> dict:
        df = read_star(self.root / "default_pipeline.star")["pipeline_output_edges"]
        names = [n for p, n in zip(df["rlnPipeLineEdgeProcess"], df["rlnPipeLineEdgeToNode"]) if p == job]
        types = self.nodes()
        return {n: types[n] for n in names}

    def snapshot(self) -> dict:
        """{relative path: (size, mtime)} of every file in the project."""
        out = {}
        for p in self.root.rglob("*"):
            if p.is_file():
                st = p.stat()
                out[str(p.relative_to(self.root))] = (st.st_size, st.st_mtime_ns)
        return out

    def changed_outside(self, before: dict, job: str) -> list[str]:
        """Files created or changed since ``before`` outside ``job``'s folder and RELION's own bookkeeping."""
        after = self.snapshot()
        changed = [k for k, v in after.items() if before.get(k) != v]
        changed += [k for k in before if k not in after]
        return sorted(k for k in changed if not k.startswith(job) and not k.startswith(RELION_BOOKKEEPING)
                      and not Path(k).name.startswith("pipeline_"))

    def wait_for(self, path: Path, pattern: str, timeout=120) -> None:
        """Wait until the regular expression ``pattern`` matches the text of ``path``."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if path.exists() and re.search(pattern, path.read_text(errors="replace")):
                return
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} did not appear in {path} within {timeout} s")
