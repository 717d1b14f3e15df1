"""Fuzz GenEM's readers and command-line entry points with mutated valid inputs.

    nice -n 10 python3 tools/fuzz_readers.py --per-reader 10000 --per-command 200 --seed 0 --json counts.json

Valid seed inputs (a tiny simulated dataset: MRC micrographs and stacks, particles and micrographs STAR, particles
.cs; a PDB and an mmCIF model; PNG and TIFF images; a tiny denoiser) are mutated (bit flips, junk bytes, special
values, truncation, huge header dimensions, junk STAR/PDB tokens, cut or repeated lines) and handed to every reader
and to ``genem denoise apply``, ``genem pick apply`` and ``genem simulate --structure``. Each input ends one of three
ways: ``clean`` (GenemInputError; for a command, exit 2 with one ``genem: error:`` line and no traceback),
``accepted`` (read without error), or ``other`` (any other exception, a timeout, or running out of the memory
limit): a bug. The process runs under a memory limit and every input under a time limit. Counts are printed as JSON;
the exit status is 1 when any ``other`` occurred. tests/io/test_fuzz_readers.py runs a short, seeded version.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT_BYTES = 6 * 2 ** 30  # RLIMIT_DATA: a reader that tries to allocate more fails the run
TIME_LIMIT_S = 120               # per input (the largest accepted potential boxes take ~12 s unloaded)

JUNK_TOKENS = ["nan", "NaN", "inf", "-inf", "1e308", "-1e308", "-1", "0", "", "abc", "99999999999999999999",
               '"', "'", "data_", "loop_", "_rlnImageName", "1@", "@", "999999@x.mrcs", "-5@Particles/x.mrcs",
               "\x00", "\xff", ";", "#", "1e-320", "0x10", "None", "-0", "2147483648", "1.#QNAN"]
SPECIAL_INT32 = [0, -1, 1, 2 ** 31 - 1, -2 ** 31, 2 ** 16, 2 ** 20, 2 ** 24, 65536 * 3, 7]


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout()


# ------------------------------------------------------------------------------------------------ mutations
def mutate(data: bytes, rng: np.random.Generator, *, text: bool, header_ints=()) -> bytes:
    """1-3 random mutations of ``data``; ``header_ints``: byte offsets of int32 header fields (dimensions...)."""
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        ops = ["flip", "junk", "special", "truncate", "extend"]
        if header_ints:
            ops += ["header"] * 3
        if text:  # mostly the damage a text file meets: junk values, lost or repeated lines, a cut-off write
            ops += ["token"] * 12 + ["line"] * 6
        op = ops[int(rng.integers(len(ops)))]
        n = len(b)
        if op == "flip" and n:
            for _ in range(int(rng.integers(1, 17))):
                i = int(rng.integers(n))
                b[i] ^= 1 << int(rng.integers(8))
        elif op == "junk" and n:
            i = int(rng.integers(n))
            k = int(rng.integers(1, 33))
            b[i:i + k] = rng.integers(0, 256, k, dtype=np.uint8).tobytes()
        elif op == "special" and n >= 4:
            i = int(rng.integers(n - 3))
            v = [np.float32(np.nan), np.float32(np.inf), np.float32(-np.inf), np.float32(3e38), np.float32(-1)]
            b[i:i + 4] = np.asarray(v[int(rng.integers(len(v)))], np.float32).tobytes()
        elif op == "truncate":
            b = b[:int(rng.integers(0, n + 1))]
        elif op == "extend":
            b += rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
        elif op == "header" and n >= 4:
            off = header_ints[int(rng.integers(len(header_ints)))]
            if off + 4 <= n:
                v = SPECIAL_INT32[int(rng.integers(len(SPECIAL_INT32)))] if rng.random() < 0.7 else \
                    int(rng.integers(-2 ** 31, 2 ** 31))
                b[off:off + 4] = int(v).to_bytes(4, "little", signed=True)
        elif op in ("token", "line"):
            b = bytearray(_mutate_text(bytes(b), rng, op))
    return bytes(b)


def _mutate_text(data: bytes, rng, op: str) -> bytes:
    lines = data.split(b"\n")
    if not lines:
        return data
    i = int(rng.integers(len(lines)))
    if op == "line":
        choice = int(rng.integers(4))
        if choice == 0:
            del lines[i]
        elif choice == 1:
            lines.insert(i, lines[i])
        elif choice == 2:
            lines[i] = lines[i][:int(rng.integers(len(lines[i]) + 1))]
        else:
            lines = lines[:i + 1]
            lines[-1] = lines[-1][:int(rng.integers(len(lines[-1]) + 1))]
        return b"\n".join(lines)
    parts = re.split(rb"(\s+)", lines[i])  # words at even positions, their separators between
    j = 2 * int(rng.integers((len(parts) + 1) // 2))
    parts[j] = JUNK_TOKENS[int(rng.integers(len(JUNK_TOKENS)))].encode("latin-1")
    lines[i] = b"".join(parts)
    return b"\n".join(lines)


# ------------------------------------------------------------------------------------------------ seed inputs
def make_seeds(work: Path) -> dict:
    """Write the valid inputs into ``work``; return ``{name: path}``."""
    import mrcfile
    from PIL import Image

    from genem.simulate import SimulationConfig, run_simulation

    cfg = SimulationConfig(n_micrographs=1, micrograph_size_px=(192, 192), pixel_size_A=4.0, particle_box_px=32,
                           particles_per_micrograph=12, particles_sd=0.0, noise_mode="snr", snr=0.1, seed=1)
    ds = run_simulation(cfg, work / "ds")
    pdb_lines = [ln for ln in (ROOT / "genem" / "data" / "default_structure.pdb").read_text().splitlines()
                 if ln.startswith(("ATOM", "HETATM"))][:60]
    (work / "model.pdb").write_text("\n".join(pdb_lines + ["END"]) + "\n")
    import gemmi

    st = gemmi.read_structure(str(work / "model.pdb"))
    st.setup_entities()
    st.make_mmcif_document().write_file(str(work / "model.cif"))
    vol = np.zeros((16, 16, 16), np.float32)
    vol[5:11, 5:11, 5:11] = 1.0
    with mrcfile.new(work / "map.mrc", overwrite=True) as m:
        m.set_data(vol)
        m.voxel_size = 8.0
    img = (np.random.default_rng(0).normal(128, 20, (48, 64))).clip(0, 255).astype(np.uint8)
    Image.fromarray(img).save(work / "image.png")
    Image.fromarray(img.astype(np.uint16) * 200).save(work / "image.tif")
    _tiny_model(work / "model")
    return {"mrc": ds / "Micrographs" / "mic_000001.mrc", "mrcs": ds / "Particles" / "mic_000001.mrcs",
            "particles_star": ds / "particles.star", "micrographs_star": ds / "micrographs.star",
            "cs": ds / "particles.cs", "pdb": work / "model.pdb", "cif": work / "model.cif", "map": work / "map.mrc",
            "png": work / "image.png", "tif": work / "image.tif", "ds": ds, "model": work / "model"}


def _tiny_model(folder: Path) -> None:
    import torch

    from genem.restore.model import Denoiser
    from genem.restore.postprocess import PostProcessor, postprocess_config
    from genem.restore.schedule import DiffusionSchedule
    from genem.restore.unet import UNet, UNetConfig

    torch.manual_seed(0)
    den = Denoiser(UNet(UNetConfig(base_channels=4, channel_mults=(1, 2))).eval(), DiffusionSchedule("cosine", 100),
                   PostProcessor(postprocess_config(4, (1, 2))).eval(), 4.0, 32, 2.0, default_steps=2,
                   meta={"name": "fuzz"})
    den.save(folder)


MRC_HEADER_INTS = (0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 64, 68, 72, 92, 208, 212, 220)
PNG_HEADER_INTS = (8, 16, 20, 24, 33)
TIFF_HEADER_INTS = (4, 8, 10, 14, 18, 22, 26, 30)


def readers(seeds: dict) -> dict:
    """``{name: (seed, suffix, text, header offsets, function of the mutated file's path)}``."""
    from genem.io import read_cs, read_micrograph_table, read_mrc, read_particle_set, read_stack_images, read_star
    from genem.io.mrc import read_stack_shape
    from genem.io.images import probe_image, read_image
    from genem.simulate.structures import load_potential

    def mrc(p):
        read_stack_shape(p)
        read_mrc(p)
        read_stack_images(p, [0])

    def star(p):
        read_star(p)
        read_particle_set(p)

    def structure(p):
        load_potential(p, 20.0)  # coarse: the reading and the checks are what is fuzzed, not the physics

    def image(p):
        probe_image(p)
        read_image(p)

    return {
        "mrc (read_mrc, read_stack_shape, read_stack_images)": ("mrc", ".mrc", False, MRC_HEADER_INTS, mrc),
        "mrcs stack": ("mrcs", ".mrcs", False, MRC_HEADER_INTS, mrc),
        "particles STAR (read_star, read_particle_set)": ("particles_star", ".star", True, (), star),
        "micrographs STAR (read_micrograph_table)": ("micrographs_star", ".star", True, (), read_micrograph_table),
        "cryoSPARC .cs (read_cs, read_particle_set)": ("cs", ".cs", False, (), lambda p: (read_cs(p),
                                                                                          read_particle_set(p))),
        "PDB (load_potential)": ("pdb", ".pdb", True, (), structure),
        "mmCIF (load_potential)": ("cif", ".cif", True, (), structure),
        "MRC map (load_potential)": ("map", ".mrc", False, MRC_HEADER_INTS, structure),
        "PNG (pick read_image, probe_image)": ("png", ".png", False, PNG_HEADER_INTS, image),
        "TIFF (pick read_image, probe_image)": ("tif", ".tif", False, TIFF_HEADER_INTS, image),
    }


def commands(seeds: dict, out: Path) -> dict:
    """``{name: (seed, suffix, text, header offsets, argv builder)}`` for the command line."""
    return {
        "genem denoise apply --particles STAR": ("particles_star", ".star", True, (), lambda p: [
            "denoise", "apply", "--particles", p, "--model", seeds["model"], "--out", out, "--no-progress"]),
        "genem denoise apply --particles MRCS": ("mrcs", ".mrcs", False, MRC_HEADER_INTS, lambda p: [
            "denoise", "apply", "--particles", p, "--model", seeds["model"], "--out", out, "--no-progress",
            "--pixel-size-A", "4"]),
        "genem pick apply (PNG)": ("png", ".png", False, PNG_HEADER_INTS, lambda p: [
            "pick", "apply", "--method", "dog", "--diameter-A", "160", "--micrographs", p, "--pixel-size-A", "4",
            "--out", out, "--no-progress"]),
        "genem pick apply (MRC)": ("mrc", ".mrc", False, MRC_HEADER_INTS, lambda p: [
            "pick", "apply", "--method", "dog", "--diameter-A", "160", "--micrographs", p, "--out", out,
            "--no-progress"]),
        "genem simulate --structure (PDB)": ("pdb", ".pdb", True, (), lambda p: _simulate_argv(p, out)),
        "genem simulate --structure (map)": ("map", ".mrc", False, MRC_HEADER_INTS,
                                             lambda p: _simulate_argv(p, out)),
    }


def _simulate_argv(p, out):
    return ["simulate", "--structure", p, "--out", out, "--n-micrographs", "1", "--micrograph-size", "64",
            "--pixel-size-A", "8", "--box", "16", "--particles", "1", "--particles-sd", "0", "--noise-mode", "snr",
            "--snr", "1", "--no-progress"]


# ------------------------------------------------------------------------------------------------ running
def _run_reader(fn, path) -> str:
    from genem.io import GenemInputError

    try:
        fn(path)
        return "accepted"
    except GenemInputError as e:
        return "clean", e.problem


def _run_command(argv) -> str:
    from genem.cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in argv])
    lines = err.getvalue().splitlines()
    if rc == 0:
        return "accepted"
    errors = [ln for ln in lines if ln.startswith("genem: error:")]
    if rc == 2 and len(errors) == 1 and not any("Traceback" in ln for ln in lines):
        return "clean", errors[0].rsplit(": ", 1)[-1]
    raise RuntimeError(f"exit {rc}: {lines[-3:]}")


def fuzz(per_reader: int, per_command: int, seed: int, work: Path, *, only: str = "", log=None) -> dict:
    """Run the fuzzer; return ``{"readers": {name: counts}, "commands": {name: counts}, "failures": [...]}``."""
    seeds = make_seeds(work)
    results: dict = {"readers": {}, "commands": {}, "failures": []}
    out = work / "cli_out"
    plans = [("readers", name, spec, per_reader, lambda fn, p: _run_reader(fn, p))
             for name, spec in readers(seeds).items()]
    plans += [("commands", name, spec, per_command, lambda fn, p: _run_command(fn(p)))
              for name, spec in commands(seeds, out).items()]
    # the seed of each plan is fixed by its place in the full list: a subset (``only``) repeats the same inputs
    wanted = [w.strip().lower() for w in only.split(",")]
    plans = [(k, *plan) for k, plan in enumerate(plans) if any(w in plan[1].lower() for w in wanted)]
    signal.signal(signal.SIGALRM, _alarm)
    for k, group, name, (seed_name, suffix, text, offsets, fn), n, runner in plans:
        rng = np.random.default_rng([seed, k])
        original = Path(seeds[seed_name]).read_bytes()
        # beside the seed, so that paths inside it (stacks, micrographs) resolve as they did
        target = Path(seeds[seed_name]).with_name(f"fuzz_input{suffix}")
        counts = {"clean": 0, "accepted": 0, "other": 0}
        problems: dict = {}
        t0 = time.time()
        for i in range(n):
            target.write_bytes(mutate(original, rng, text=text, header_ints=offsets))
            shutil.rmtree(out, ignore_errors=True)
            signal.alarm(TIME_LIMIT_S)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    outcome = runner(fn, target)
                if isinstance(outcome, tuple):
                    outcome, problem = outcome
                    problems[problem[:60]] = problems.get(problem[:60], 0) + 1
                counts[outcome] += 1
            except BaseException as e:  # noqa: BLE001 - everything else is what the fuzzer looks for
                if isinstance(e, KeyboardInterrupt):
                    raise
                counts["other"] += 1
                case = work / "failures" / f"{group}_{k}_{i}{suffix}"
                case.parent.mkdir(exist_ok=True)
                shutil.copyfile(target, case)
                results["failures"].append({"what": name, "input": str(case), "error": type(e).__name__,
                                            "message": str(e)[:300],
                                            "where": traceback.format_exc().splitlines()[-3:-1]})
            finally:
                signal.alarm(0)
        target.unlink(missing_ok=True)
        common = sorted(problems.items(), key=lambda kv: -kv[1])[:5]
        results[group][name] = {**counts, "inputs": n, "seconds": round(time.time() - t0, 1),
                                "common_errors": dict(common)}
        if log:
            print(f"{name}: {results[group][name]}", file=log, flush=True)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-reader", type=int, default=10000)
    p.add_argument("--per-command", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the counts and failures here")
    p.add_argument("--only", default="", help="run only the readers / commands whose name contains one of these "
                                              "comma-separated words")
    p.add_argument("--keep", help="work folder to keep (default: a temporary one, deleted)")
    args = p.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="genem_fuzz_") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        res = fuzz(args.per_reader, args.per_command, args.seed, work, only=args.only, log=sys.stderr)
    res["seed"] = args.seed
    text = json.dumps(res, indent=1)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 1 if any(c["other"] for g in ("readers", "commands") for c in res[g].values()) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
