"""genem-relion-simulate submitted through RELION 3.1's queue settings ("Submit to queue?" Yes): the real pipeliner
fills the site's submission template (XXXcommandXXX, XXXthreadsXXX, XXXqueueXXX, ...) into run_submit.script and
hands it to the queue's submit command; here a stand-in ``qsub`` that runs the script on this machine as a queue
would on a node, its output going where the template's #SBATCH lines send it."""
from __future__ import annotations

import pytest

from _support import requires_relion
from relion_project import RelionProject, write_wrapper

pytestmark = [requires_relion, pytest.mark.relion]

TEMPLATE = """#!/bin/sh
#SBATCH --job-name=XXXnameXXX
#SBATCH --partition=XXXqueueXXX
#SBATCH --cpus-per-task=XXXthreadsXXX
#SBATCH --time=XXXextra1XXX
#SBATCH --output=XXXoutfileXXX
#SBATCH --error=XXXerrfileXXX
mpirun -n XXXmpinodesXXX XXXcommandXXX
"""
FAKE_QSUB = """#!/bin/sh
# a queue on one machine: run the submitted script with its output where its #SBATCH lines say
out=$(sed -n 's/^#SBATCH --output=//p' "$1"); err=$(sed -n 's/^#SBATCH --error=//p' "$1")
sh "$1" >> "$out" 2>> "$err"
"""


def test_simulate_job_runs_through_the_queue_submission(tmp_path, monkeypatch):
    monkeypatch.setenv("RELION_QSUB_EXTRA_COUNT", "1")
    monkeypatch.setenv("RELION_QSUB_EXTRA1", "Wall time")
    project = RelionProject(tmp_path / "project")
    site = tmp_path / "site"
    site.mkdir()
    (site / "template.sh").write_text(TEMPLATE)
    (site / "qsub").write_text(FAKE_QSUB)
    (site / "qsub").chmod(0o755)
    exe = write_wrapper(tmp_path / "bin", "genem_relion.simulate")
    job = project.add_external(exe, threads=2, params={
        "n_micrographs": 2, "micrograph_size": 128, "pixel_size": 4, "box": 32, "particles": 3, "noise_mode": "snr",
        "seed": 1, "gpu": ""}, queue={"do_queue": "Yes", "qsub": site / "qsub", "qsubscript": site / "template.sh",
                                       "queuename": "gpu", "min_dedicated": 2, "qsub_extra1": "01:00:00"})
    status = project.run(job)
    assert status == "finished", (project.root / job / "run.err").read_text()
    script = (project.root / job / "run_submit.script").read_text()
    for line in (f"#SBATCH --job-name={job}", "#SBATCH --partition=gpu", "#SBATCH --cpus-per-task=2",
                 "#SBATCH --time=01:00:00", f"#SBATCH --output={job}run.out"):
        assert line + "\n" in script
    # an External job's command replaces the whole template line (RELION adds mpirun only to its own MPI programs)
    assert f"\n{exe} --o {job} " in script and " --j 2" in script and "mpirun" not in script
    assert "micrographs: 2/2 (100%)" in (project.root / job / "run.out").read_text()
    assert (project.root / job / "particles.star").is_file()
