"""GenEM as cryoSPARC external jobs (cryosparc-tools): create the job, connect and load inputs, run the engine
locally, upload its files into the job directory, and save outputs with the right slots and passthrough.

Every call on ``CryoSPARC`` and on a job is an HTTP request to the cryoSPARC server. Credentials are never taken
from the command line: ``CryoSPARC()`` reads ``CRYOSPARC_BASE_URL`` / ``CRYOSPARC_EMAIL`` / ``CRYOSPARC_PASSWORD``
or a session saved by ``python -m cryosparc.tools login``.

Inside ``with job.run()`` any exception marks the job *failed* with the traceback in its event log (and re-raises);
the engine's progress lines go to the job's event log as one updating "progress" event.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import numpy as np

from genem.io import GenemInputError, read_particles_star, read_star, write_star
from genem.io import dataset as L
from genem.io.cs import blob_paths, format_uid, locate_on_exposures, merge_into, parse_uid, read_cs
from genem.io.cs_convert import (
    UID_COLUMN, cs_dataset_to_star, cs_exposures_to_micrographs_star, micrograph_shapes_px,
    micrographs_star_to_cs_dataset, star_to_cs_dataset,
)
from genem.io.particles import image_files

OUTPUT_SUBDIR = "genem"  # engine outputs go to <project>/<job uid>/genem/...
#: The engine CLI writes progress as plain lines (what run_engine passes on to the job's event log).
ENGINE_PROGRESS = ("--progress", "lines")
Runner = Callable[[Sequence[str], Callable[[str], None]], None]


class EngineError(RuntimeError):
    """The engine command failed; the message ends with the last lines it printed."""


# ------------------------------------------------------------------------------------------------ small parts
def parse_job_output(text: str) -> tuple[str, str]:
    """``"J12.particles"`` -> ``("J12", "particles")``."""
    m = re.fullmatch(r"\s*(J\d+)\.([A-Za-z][0-9A-Za-z_]*)\s*", str(text))
    if not m:
        raise GenemInputError(text, "give the input as JOB.OUTPUT, e.g. J12.particles")
    return m.group(1), m.group(2)


def connect_cryosparc():
    """``CryoSPARC()`` with credentials from the environment or a saved login; a one-line error otherwise."""
    from cryosparc.tools import CryoSPARC

    if not (os.environ.get("CRYOSPARC_BASE_URL") or os.environ.get("CRYOSPARC_MASTER_HOSTNAME")):
        raise GenemInputError("CRYOSPARC_BASE_URL", "not set: export the cryoSPARC URL (and CRYOSPARC_EMAIL / "
                                                    "CRYOSPARC_PASSWORD, or run `python -m cryosparc.tools login`)")
    env = os.environ.get  # read now: CryoSPARC()'s own defaults were read when cryosparc.tools was imported
    where = dict(base_url=env("CRYOSPARC_BASE_URL"), host=None, base_port=None) if env("CRYOSPARC_BASE_URL") else \
        dict(base_url=None, host=env("CRYOSPARC_MASTER_HOSTNAME"), base_port=env("CRYOSPARC_BASE_PORT"))
    try:
        return CryoSPARC(**where, email=env("CRYOSPARC_EMAIL"), password=env("CRYOSPARC_PASSWORD"))
    except Exception as e:  # no credentials, wrong password, server down, version mismatch
        raise GenemInputError(os.environ.get("CRYOSPARC_BASE_URL", "cryoSPARC"),
                              f"cannot connect ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def engine_available(command: str) -> bool:
    """Whether ``genem <command>`` exists in this installation (its CLI module imports)."""
    try:
        return importlib.util.find_spec(f"genem.cli.{command}") is not None
    except ModuleNotFoundError:
        return False


def run_engine(cmd: Sequence[str], log: Callable[[str], None]) -> None:
    """Run an engine command line (with ``--progress lines``: the engine writes a progress line per task at most
    every 2 s); every line it prints goes to ``log``; raise with the end of its output when it fails."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            errors="replace")
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.strip()
        if line:
            tail = (tail + [line])[-20:]
            log(line)
    rc = proc.wait()
    if rc != 0:
        raise EngineError(f"engine command failed (exit {rc}): {' '.join(map(str, cmd))}\n" + "\n".join(tail[-10:]))


class JobLog:
    """Progress into the job's event log: ``job.log(text, name="progress")`` updates one event in place."""

    def __init__(self, job):
        self.job = job

    def __call__(self, text: str) -> None:
        self.job.log(text, name="progress")

    def info(self, text: str) -> None:
        self.job.log(text)


def _job_path(job, rel: str) -> str:
    return str(PurePosixPath(job.uid) / OUTPUT_SUBDIR / rel)


def upload_files(job, root: Path, rels, log: JobLog) -> None:
    """Upload ``root/rel`` to ``<project>/<job>/genem/rel`` for each rel (existing files are overwritten)."""
    rels = sorted(set(rels))
    for k, rel in enumerate(rels):
        job.upload(PurePosixPath(OUTPUT_SUBDIR) / rel, str(root / rel), overwrite=True)
        log(f"uploaded {k + 1}/{len(rels)} files")


def fill_output(job, name: str, dset):
    """The dataset cryoSPARC expects for output ``name`` (``alloc_output``), filled from ``dset`` by field."""
    out = job.alloc_output(name, np.asarray(dset["uid"]))
    for f in out.fields():
        if f != "uid" and f in dset.fields():
            out[f] = dset[f]
    return out


# ------------------------------------------------------------------------------------- reading inputs locally
def localize_inputs(project, dset, work: Path, project_dir=None, log: JobLog | None = None,
                    slot: str = "blob") -> Path:
    """Return a folder under which every ``<slot>/path`` of ``dset`` exists: the project directory if it is mounted
    here (``project_dir`` or the one the server reports), otherwise a cache that the files are downloaded into."""
    paths = sorted(set(blob_paths(dset, slot)))
    if project_dir is not None:
        root = Path(project_dir)
        missing = [p for p in paths if not (root / p).is_file()]
        if missing:
            raise GenemInputError(root / missing[0], "image file not found in --project-dir")
        return root
    try:
        reported = Path(str(project.dir))
    except Exception:
        reported = None
    if reported is not None and paths and all((reported / p).is_file() for p in paths):
        return reported
    cache = work / "project_files"
    for k, p in enumerate(paths):
        target = cache / p
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            project.download_file(p, str(target))
        if log is not None:
            log(f"downloaded {k + 1}/{len(paths)} image files")
    return cache


# -------------------------------------------------------------------------------------------------- the jobs
def _dataset_outputs(job, folder: Path, log: JobLog) -> None:
    """Upload a GenEM dataset folder's files and save its particles and micrographs outputs."""
    optics, parts = read_particles_star(folder / L.PARTICLES_STAR)
    mic_names = sorted({str(s) for s in parts.get("rlnMicrographName", [])})
    shapes = micrograph_shapes_px(folder, mic_names) if mic_names else None
    stacks = image_files(parts)
    extras = [str(p.relative_to(folder)) for p in sorted((folder / L.GROUND_TRUTH_DIR).glob("*.mrc"))]
    extras += [n for n in (L.PARTICLES_STAR, L.MICROGRAPHS_STAR, L.COMPLETE_MARK, L.PREVIEW_PNG)
               if (folder / n).is_file()]
    upload_files(job, folder, list(stacks) + mic_names + extras, log)
    prefix = str(PurePosixPath(job.uid) / OUTPUT_SUBDIR) + "/"
    pd_ = star_to_cs_dataset(optics, parts, path_prefix=prefix, micrograph_shape_px=shapes,
                             source=str(folder / L.PARTICLES_STAR))
    job.save_output("particles", fill_output(job, "particles", pd_))
    log.info(f"saved {len(pd_)} particles")
    if mic_names and (folder / L.MICROGRAPHS_STAR).is_file():
        b = read_star(folder / L.MICROGRAPHS_STAR)
        md = micrographs_star_to_cs_dataset(b.get("optics"), b["micrographs"], micrograph_shape_px=shapes,
                                            path_prefix=prefix, source=str(folder / L.MICROGRAPHS_STAR))
        job.save_output("micrographs", fill_output(job, "micrographs", md))
        log.info(f"saved {len(md)} micrographs")


def _add_dataset_outputs(job) -> None:
    job.add_output("particle", "particles", slots=["blob", "ctf", "alignments3D", "location"],
                   title="GenEM particles")
    job.add_output("exposure", "micrographs", slots=["micrograph_blob", "ctf"], title="GenEM micrographs")


def _work_dir(work_dir) -> Path:
    return Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="genem-cryosparc-"))


def _dataset_job(cs, project_uid: str, workspace_uid: str, title: str, engine_argv: list, out_name: str, *,
                 work_dir, runner: Runner, note: str | None = None) -> str:
    """A new external job that runs one engine command writing a GenEM dataset folder, then saves that folder's
    particles and micrographs as the job's outputs; returns the job's uid."""
    out = _work_dir(work_dir) / out_name
    project = cs.find_project(project_uid)
    job = project.create_external_job(workspace_uid, title=title)
    _add_dataset_outputs(job)
    log = JobLog(job)
    with job.run():
        if note:
            log.info(note)
        runner([sys.executable, "-m", "genem", *engine_argv, "--out", str(out), *ENGINE_PROGRESS], log)
        _dataset_outputs(job, out, log)
    return job.uid


def simulate_job(cs, project_uid: str, workspace_uid: str, simulate_args: Sequence[str] = (), *, work_dir=None,
                 title: str | None = None, runner: Runner = run_engine) -> str:
    """Simulate a dataset into a new external job with outputs ``particles`` and ``micrographs``; returns its uid."""
    args = list(map(str, simulate_args))
    return _dataset_job(cs, project_uid, workspace_uid, title or "GenEM simulate", ["simulate", *args], "simulation",
                        work_dir=work_dir, runner=runner, note="GenEM simulate: " + " ".join(args))


def translate_job(cs, project_uid: str, workspace_uid: str, *, model, dataset, engine_args: Sequence[str] = (),
                  work_dir=None, title: str | None = None, runner: Runner = run_engine, check_engine: bool = True) -> str:
    """Translate a simulated dataset's noise (``genem translate apply``) into a new job's particles/micrographs."""
    if check_engine and not engine_available("translate"):
        raise GenemInputError("genem translate", "not available in this installation (engine not installed yet)")
    argv = ["translate", "apply", "--model", str(model), "--simulated", str(dataset), *map(str, engine_args)]
    return _dataset_job(cs, project_uid, workspace_uid, title or "GenEM translate", argv, "translated",
                        work_dir=work_dir, runner=runner)


def denoise_job(cs, project_uid: str, workspace_uid: str, *, particles: str, model, engine_args: Sequence[str] = (),
                work_dir=None, project_dir=None, title: str | None = None, runner: Runner = run_engine,
                check_engine: bool = True) -> str:
    """Denoise the particles of ``JOB.OUTPUT``: a new job whose ``particles`` output has a new ``blob`` and passes
    every other slot of the input through."""
    if check_engine and not engine_available("denoise"):
        raise GenemInputError("genem denoise", "not available in this installation (engine not installed yet)")
    src_job, src_output = parse_job_output(particles)
    work = _work_dir(work_dir)
    project = cs.find_project(project_uid)
    job = project.create_external_job(workspace_uid, title=title or "GenEM denoise")
    job.connect("particles", src_job, src_output, slots=["blob", "ctf"])
    job.add_output("particle", "particles", slots=["blob"], passthrough="particles", title="Denoised particles")
    log = JobLog(job)
    with job.run():
        inp = job.load_input("particles", ["blob", "ctf"])
        log.info(f"loaded {len(inp)} particles from {src_job}.{src_output}")
        base = localize_inputs(project, inp, work, project_dir, log)
        in_dir, out_dir = work / "input", work / "denoised"
        optics, parts = cs_dataset_to_star(inp, project_root=base, star_root=in_dir, source=particles)
        write_star(in_dir / "particles.star", {"optics": optics, "particles": parts})
        runner([sys.executable, "-m", "genem", "denoise", "apply", "--model", str(model),
                "--particles", str(in_dir / "particles.star"), "--out", str(out_dir), *ENGINE_PROGRESS,
                *map(str, engine_args)], log)
        # `genem denoise apply` names its STAR after the input's: particles.star -> particles_denoised.star
        out_star = out_dir / "particles_denoised.star"
        o2, p2 = read_particles_star(out_star)
        if UID_COLUMN not in p2.columns:
            if len(p2) != len(inp):
                raise RuntimeError("denoise output lost the particle ids (rlnGenemCsUid) and changed the row count")
            p2[UID_COLUMN] = [format_uid(u) for u in inp["uid"]]
        upload_files(job, out_dir, image_files(p2), log)
        new = star_to_cs_dataset(o2, p2, path_prefix=str(PurePosixPath(job.uid) / OUTPUT_SUBDIR) + "/",
                                 source=str(out_star))
        merged = merge_into(inp, new, slots=["blob"])
        job.save_output("particles", fill_output(job, "particles", merged))
        log.info(f"saved {len(merged)} denoised particles")
    return job.uid


def pick_job(cs, project_uid: str, workspace_uid: str, *, micrographs: str, model=None, diameter_A=None,
             engine_args: Sequence[str] = (), work_dir=None, project_dir=None, title: str | None = None,
             runner: Runner = run_engine, check_engine: bool = True) -> str:
    """Pick the micrographs of ``JOB.OUTPUT`` (exposures) with ``genem pick apply`` (a picker folder, or the DoG
    picker of ``diameter_A``): a new job whose ``particles`` output has the engine's ``location`` and
    ``pick_stats`` (its particles.cs), each particle on the uid and path of the exposure it was picked on."""
    if check_engine and not engine_available("pick"):
        raise GenemInputError("genem pick", "not available in this installation (engine not installed yet)")
    if (model is None) == (diameter_A is None):
        raise GenemInputError("--model", "give a picker folder (--model) or the DoG picker's --diameter-A, one")
    src_job, src_output = parse_job_output(micrographs)
    work = _work_dir(work_dir)
    project = cs.find_project(project_uid)
    job = project.create_external_job(workspace_uid, title=title or "GenEM pick")
    job.connect("micrographs", src_job, src_output, slots=["micrograph_blob"])
    job.add_output("particle", "particles", slots=["location", "pick_stats"], title="GenEM picks")
    log = JobLog(job)
    with job.run():
        inp = job.load_input("micrographs", ["micrograph_blob"])
        log.info(f"loaded {len(inp)} micrographs from {src_job}.{src_output}")
        base = localize_inputs(project, inp, work, project_dir, log, slot="micrograph_blob")
        in_dir, out_dir = work / "input", work / "picks"
        optics, mics = cs_exposures_to_micrographs_star(inp, project_root=base, star_root=in_dir, source=micrographs)
        write_star(in_dir / "micrographs.star", {"optics": optics, "micrographs": mics})
        picker = ["--model", str(model)] if model is not None else \
            ["--method", "dog", "--diameter-A", str(diameter_A)]
        runner([sys.executable, "-m", "genem", "pick", "apply", *picker, "--micrographs",
                str(in_dir / "micrographs.star"), "--out", str(out_dir), *ENGINE_PROGRESS, *map(str, engine_args)], log)
        uid_of = {name: parse_uid(u) for name, u in zip(mics["rlnMicrographName"], mics[UID_COLUMN])}
        picks = locate_on_exposures(read_cs(out_dir / "particles.cs"), inp, uid_of)
        job.save_output("particles", fill_output(job, "particles", picks))
        log.info(f"saved {len(picks)} picked particles on {len(inp)} micrographs")
    return job.uid


def run_from_args(args) -> int:
    cs = connect_cryosparc()
    common = dict(work_dir=args.work_dir, title=args.title)
    if args.online == "simulate":
        extra = list(args.simulate_args)
        if extra and extra[0] == "--":
            extra = extra[1:]
        uid = simulate_job(cs, args.project, args.workspace, extra, **common)
    elif args.online == "pick":
        uid = pick_job(cs, args.project, args.workspace, micrographs=args.micrographs, model=args.model,
                       diameter_A=args.diameter_A, engine_args=args.engine_args, project_dir=args.project_dir,
                       **common)
    elif args.online == "denoise":
        uid = denoise_job(cs, args.project, args.workspace, particles=args.particles, model=args.model,
                          engine_args=args.engine_args, project_dir=args.project_dir, **common)
    else:
        uid = translate_job(cs, args.project, args.workspace, model=args.model, dataset=args.dataset,
                            engine_args=args.engine_args, **common)
    print(f"genem-cryosparc: {args.project} {uid} completed")
    return 0
