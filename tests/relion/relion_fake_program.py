"""A minimal External-job program for the contract tests: it copies the particles STAR it is given (adding one
column), in ``steps`` timed steps with progress lines, and can be told to fail in each way a real program can."""
from __future__ import annotations

import os
import signal
import sys
import time

import pandas as pd

from genem.io import GenemInputError, read_particles_star, write_star
from genem.progress import report
from genem_relion.job import Param, ProgramSpec, run_program

SPEC = ProgramSpec(
    name="genem-relion-fake",
    module="relion_fake_program",
    description="Copy a particles STAR (contract tests only).",
    inputs={"in_parts": "particles STAR"},
    required_inputs=(("in_parts",),),
    params=(
        Param("steps", "int", 1, "number of timed steps", minimum=0),
        Param("step_s", "float", 0.0, "seconds per step", minimum=0),
        Param("crash", "choice", "none", "how to fail",
              choices=("none", "input", "exception", "segfault", "hang", "forget_node")),
    ),
)


def run(job):
    optics, parts = read_particles_star(job.input("in_parts"))
    progress = job.progress()
    for i in range(job.params.steps):
        time.sleep(job.params.step_s)
        report(progress, "steps", i + 1, job.params.steps)
    crash = job.params.crash
    if crash == "input":
        raise GenemInputError(job.input("in_parts"), "particles have no rlnImageName column")
    if crash == "exception":
        raise ZeroDivisionError("division by zero in the engine")
    if crash == "segfault":
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGSEGV)
    if crash == "hang":  # ignores abort requests: only the supervisor can stop it
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
        while True:
            time.sleep(0.1)
    parts = parts.copy()
    parts["rlnGenemFake"] = 1
    blocks = {"optics": optics, "particles": parts} if optics is not None else {"particles": parts}
    write_star(job.path("particles.star"), blocks)
    job.add_node(job.path("particles.star"), "particles")
    if crash == "forget_node":
        job.add_node(job.path("never_written.star"), "particles")


def main(argv=None):
    return run_program(SPEC, run, argv)


if __name__ == "__main__":
    sys.exit(main())
