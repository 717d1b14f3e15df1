"""Simulator benchmark: particle stacks against relion_project, 4096^2 micrographs, memory over many micrographs.

    python benchmarks/simulate.py [--particles 5000] [--micrographs 6] [--threads 1,2] [--skip-relion]

Everything runs on this machine, one after the other, with each of ``--threads`` intra-op thread counts for the
engine (relion_project is single-threaded). On a shared machine whose other core is busy, one thread is faster
than two (the second one waits for a time slice). Printed:

1. particle stacks, box 128, 1.5 A/px, CTF (random defocus and astigmatism) + white Gaussian noise, from the same
   128^3 map: ``relion_project --ctf --add_noise --white_noise`` timed as a whole process (start-up, map
   transform and writing the .mrcs included), its start-up alone (a 10-particle run), and the engine's
   ``simulate_particle_stack`` both as a whole process (python + torch import, map read, projector, render, write
   the .mrcs) and in-process (render only). Ratios: whole process vs whole process, and in-process vs RELION's rate
   after start-up.
2. seconds per 4096x4096 micrograph with 300 particles (1.5 A/px, box 128, Poisson noise at 40 e/A^2, random ice;
   the whole pipeline: imaging, extraction, writing the micrograph, its clean twin, mask, ice map, particles).
3. resident memory after every micrograph of that run: peak, and growth from the first to the last.
"""
from __future__ import annotations

import os

# idle OpenMP threads sleep instead of spinning: on a machine shared with other work, spinning threads steal the
# time slices their siblings need (2 threads ran 3x slower than 1 without this). Must precede the torch import.
if "--omp-active" not in os.sys.argv:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BOX = 128
PIXEL_A = 1.5


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_inputs(work: Path, n: int, seed: int = 0):
    """map128.mrc (the default structure's potential in a 128 box) and angles.star (poses, CTFs) for n particles."""
    import numpy as np
    import pandas as pd

    from genem.io import write_mrc, write_star
    from genem.physics.rotations import sample_uniform_euler_relion
    from genem.simulate.config import DEFAULT_STRUCTURE
    from genem.simulate.structures import load_potential

    pot = load_potential(DEFAULT_STRUCTURE, PIXEL_A).volume_V
    m = pot.shape[0]
    vol = np.zeros((BOX,) * 3, np.float32)
    o = BOX // 2 - m // 2
    vol[o:o + m, o:o + m, o:o + m] = pot
    write_mrc(work / "map128.mrc", vol, PIXEL_A)
    rng = np.random.default_rng(seed)
    eul = sample_uniform_euler_relion(rng, n)
    du = rng.uniform(8000, 25000, n)
    optics = pd.DataFrame({"rlnOpticsGroupName": ["g1"], "rlnOpticsGroup": [1], "rlnVoltage": [300.0],
                           "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1],
                           "rlnImagePixelSize": [PIXEL_A], "rlnImageSize": [BOX], "rlnImageDimensionality": [2]})
    parts = pd.DataFrame({"rlnAngleRot": eul[:, 0], "rlnAngleTilt": eul[:, 1], "rlnAnglePsi": eul[:, 2],
                          "rlnOriginXAngst": 0.0, "rlnOriginYAngst": 0.0, "rlnDefocusU": du,
                          "rlnDefocusV": du - rng.uniform(0, 400, n), "rlnDefocusAngle": rng.uniform(0, 180, n),
                          "rlnOpticsGroup": 1})
    for k in (n, 10):
        write_star(work / f"angles_{k}.star", {"optics": optics, "particles": parts.iloc[:k]})


def engine_stack(map_path: Path, star_path: Path, out_path: Path, threads: int, noise_sd: float = 1.0):
    """Render the stack described by star_path from map_path; returns seconds spent rendering (in-process)."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from genem.io import read_mrc, read_star, write_mrc
    from genem.physics.ctf import CTFParams
    from genem.physics.projection import FourierProjector
    from genem.simulate.stacks import crop_volume_to_support, simulate_particle_stack

    vol, px = read_mrc(map_path)
    parts = read_star(star_path)["particles"]
    eul = parts[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(float)
    ctfs = [CTFParams(u, v, a) for u, v, a in parts[["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]].to_numpy(float)]
    with torch.inference_mode():
        proj = FourierProjector(crop_volume_to_support(vol), px)
        t = time.perf_counter()
        c = time.process_time()
        st = simulate_particle_stack(proj, eul, ctfs, box_px=BOX, noise_mode="gaussian", noise_sd=noise_sd,
                                     rng=np.random.default_rng(0))
        dt, dc = time.perf_counter() - t, time.process_time() - c
    write_mrc(out_path, st.images, px)
    return dt, dc


def bench_stacks(work: Path, n: int, threads: int, skip_relion: bool):
    write_inputs(work, n)
    print(f"\n== particle stacks: {n} particles, box {BOX}, {PIXEL_A} A/px, CTF + white noise ==")
    res = {}
    if not skip_relion:
        for k, key in ((10, "relion_startup"), (n, "relion")):
            c0 = _child_cpu()
            t = time.perf_counter()
            r = subprocess.run(["relion_project", "--i", "map128.mrc", "--ang", f"angles_{k}.star", "--o", f"relion_{k}",
                                "--ctf", "--add_noise", "--white_noise", "1"], cwd=work, capture_output=True, text=True)
            res[key] = time.perf_counter() - t
            res[key + "_cpu"] = _child_cpu() - c0
            if r.returncode != 0:
                sys.exit(f"relion_project failed: {r.stderr[-500:]}")
        rate_whole = n / res["relion"]
        rate_after = (n - 10) / max(res["relion"] - res["relion_startup"], 1e-9)
        print(f"relion_project --ctf --add_noise (whole process, incl. start-up): {res['relion']:.2f} s = "
              f"{rate_whole:.0f} particles/s;  start-up (10-particle run) {res['relion_startup']:.2f} s; "
              f"after start-up {rate_after:.0f} particles/s (single-threaded program); CPU time {res['relion_cpu']:.2f} s"
              f" = {res['relion_cpu'] / n * 1e3:.2f} ms/particle")
    for th in threads:
        c0 = _child_cpu()
        t = time.perf_counter()
        r = subprocess.run([sys.executable, __file__, "--stack-worker", str(work / "map128.mrc"),
                            str(work / f"angles_{n}.star"), str(work / "engine.mrcs"), "--threads", str(th)]
                           + (["--omp-active"] if "--omp-active" in sys.argv else []),
                           capture_output=True, text=True)
        whole = time.perf_counter() - t
        whole_cpu = _child_cpu() - c0
        if r.returncode != 0:
            sys.exit(f"engine stack worker failed: {r.stderr[-2000:]}")
        render, render_cpu = (float(x) for x in r.stdout.strip().split()[-2:])
        print(f"engine simulate_particle_stack, {th} thread(s): whole process (python, torch import, map, projector, "
              f"render, write) {whole:.2f} s = {n / whole:.0f} particles/s;  render only {render:.2f} s = "
              f"{n / render:.0f} particles/s;  CPU time whole {whole_cpu:.2f} s, render {render_cpu:.2f} s = "
              f"{render_cpu / n * 1e3:.2f} ms/particle (all threads)")
        if not skip_relion:
            print(f"  ratio engine/RELION ({th} thread(s)): whole process vs whole process "
                  f"{res['relion'] / whole:.2f}x;  engine render vs RELION after start-up "
                  f"{(n / render) / rate_after:.2f}x")


def bench_micrographs(work: Path, n_mics: int, threads: int, size: int, particles: int):
    """Runs in a fresh process per thread count (see main), so that memory starts from the same point."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from genem.simulate import SimulationConfig, pipeline, run_simulation

    cfg = SimulationConfig(n_micrographs=n_mics, micrograph_size_px=(size, size), pixel_size_A=PIXEL_A,
                           particle_box_px=BOX, particles_per_micrograph=particles, noise_mode="poisson",
                           dose_e_per_A2=40.0, ice="random", seed=1)
    times, rss, cpus = [], [], []
    original = pipeline._write_micrograph
    last = [time.perf_counter(), time.process_time()]

    def timed_write(*a, **kw):
        original(*a, **kw)
        now = time.perf_counter()
        times.append(now - last[0])
        cpus.append(time.process_time() - last[1])
        last[0], last[1] = now, time.process_time()
        rss.append(rss_mb())

    pipeline._write_micrograph = timed_write
    try:
        print(f"\n== micrographs: {n_mics} x {size}x{size}, {particles} particles, box {BOX}, {PIXEL_A} A/px, "
              f"Poisson 40 e/A^2, random ice, {threads} threads ==")
        base = rss_mb()
        t0 = time.perf_counter()
        last[0], last[1] = t0, time.process_time()
        run_simulation(cfg, work / "mics")
        total = time.perf_counter() - t0
    finally:
        pipeline._write_micrograph = original
    t = np.array(times)
    print(f"seconds per micrograph (imaging + extraction + writing 4 images and particles): first {t[0]:.2f} s, "
          f"mean of the rest {t[1:].mean() if len(t) > 1 else t[0]:.2f} s, all {np.round(t, 2).tolist()}")
    print(f"CPU seconds per micrograph (all threads): first {cpus[0]:.2f}, mean of the rest "
          f"{np.mean(cpus[1:]) if len(cpus) > 1 else cpus[0]:.2f}")
    print(f"whole run incl. set-up and the final tables/preview: {total:.1f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"resident memory: before {base:.0f} MB; after micrograph 1 {rss[0]:.0f} MB, after micrograph {len(rss)} "
          f"{rss[-1]:.0f} MB (growth first->last {rss[-1] - rss[0]:+.0f} MB); peak {peak:.0f} MB")
    print(f"RSS after each micrograph (MB): {[round(x) for x in rss]}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--particles", type=int, default=5000, help="particles in the stack comparison")
    ap.add_argument("--micrographs", type=int, default=6, help="4096^2 micrographs for timing and memory")
    ap.add_argument("--micrograph-size", type=int, default=4096)
    ap.add_argument("--particles-per-micrograph", type=int, default=300)
    ap.add_argument("--threads", default="1,2", help="engine intra-op threads to try, comma-separated")
    ap.add_argument("--micrograph-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--skip-relion", action="store_true")
    ap.add_argument("--omp-active", action="store_true", help="leave OMP_WAIT_POLICY unset (spinning threads)")
    ap.add_argument("--skip-stacks", action="store_true")
    ap.add_argument("--skip-micrographs", action="store_true")
    ap.add_argument("--work", help="work folder (default: a temporary one, removed afterwards)")
    ap.add_argument("--stack-worker", nargs=3, metavar=("MAP", "STAR", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    threads = [int(t) for t in str(args.threads).split(",")]
    if args.stack_worker:
        print(*engine_stack(*(Path(p) for p in args.stack_worker), threads[0]))
        return
    if args.micrograph_worker:
        bench_micrographs(Path(args.work), args.micrographs, threads[0], args.micrograph_size,
                          args.particles_per_micrograph)
        return
    import shutil

    if not args.skip_relion and not shutil.which("relion_project"):
        print("relion_project not found: skipping the RELION comparison")
        args.skip_relion = True
    print(f"machine: {os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.1f} at start; "
          f"engine threads {threads}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    with tempfile.TemporaryDirectory(prefix="genem-bench-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not args.skip_stacks:
            bench_stacks(work, args.particles, threads, args.skip_relion)
        if not args.skip_micrographs:
            for th in threads:
                mw = work / f"mics_{th}"
                mw.mkdir(exist_ok=True)
                r = subprocess.run([sys.executable, __file__, "--micrograph-worker", "--work", str(mw)]
                                   + (["--omp-active"] if args.omp_active else []) + [
                                    "--micrographs", str(args.micrographs), "--threads", str(th),
                                    "--micrograph-size", str(args.micrograph_size),
                                    "--particles-per-micrograph", str(args.particles_per_micrograph)],
                                   capture_output=True, text=True)
                print(r.stdout.rstrip())
                if r.returncode != 0:
                    sys.exit(f"micrograph worker failed: {r.stderr[-2000:]}")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
