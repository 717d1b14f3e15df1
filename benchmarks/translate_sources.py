"""Does noise translation hold on micrographs it was not built on? One protocol for every real source (issue 20).

    python benchmarks/translate_sources.py --out DIR [--quick] [--sources epu,ucsf,10028] [--modes gaussian,physics]
                                          [--runs epu/physics,...] [--jobs 3] [--seeds 3] [--data ../shared/data]

Sources (``../shared/data/micrographs``):
- ``epu``: ``epu2.9_example.mrc``, one 4096^2 Falcon micrograph at 0.667 A/px: simulated at 1.3331 A/px; one
  micrograph, so strips: the translator's default split (training | validation strip | held-out 25 % strip) and
  the held-out strip (``MODEL/heldout``) is the evaluation set.
- ``ucsf``: ``ucsf_1142/Ucsf_stack_1142_DW.mrc``, one 927x959 micrograph whose pixel size is not recorded: taken
  as 2.0 A/px (an assumption; ``--real-pixel-size-A``), simulated at 2.0 A/px; strips as for epu.
- ``10028``: CryoPPP's EMPIAR-10028 renders, 8-bit 1024^2 PNG at 5.36 A/px: the 4 ``train`` micrographs train
  (one of them validates, whole), the ``valid`` micrograph is the evaluation set (whole); the ``test`` split is
  never read. Simulated at 10.72 A/px (2x, as the picking benchmark) with the 70S ribosome map.

Per source and input mode (``gaussian``: white noise at SNR 0.1; ``physics``: Poisson noise at a dose, ice,
detector MTF), simulate a training set (seed 1) and an evaluation set (seed 2), train with the default command
(``genem translate train --simulated SIM --real REAL --out MODEL``, plus the pixel size where the header has none;
``--quick`` adds ``--time-limit-min``), translate the evaluation set, and run ``genem evaluate realism`` (3 seeds,
stronger classifier, artefacts) of the held-out real set against the Gaussian simulation, the mode's own
simulation and its translation. Targets (issue 20): RAPS distance cut >= 70 % against the Gaussian simulation,
stronger-classifier C2ST <= 0.65 (every seed), no artefact. DIR/report.json, DIR/report.md,
DIR/<source>_<mode>_{spectra,before_after}.png. Re-running into the same DIR skips finished steps.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = (REPO / ".." / "shared" / "data").resolve()
TARGETS = {"raps_cut": 0.70, "c2st_strong_max": 0.65}
BUDGET = {"quick": {"time_limit_min": 10.0}, "full": {"time_limit_min": None}}

SOURCES = {
    "epu": dict(real=["micrographs/epu2.9_example.mrc"], real_px=None, eval_real="heldout",
                sim=["--structure", "models/6z6u.pdb", "--pixel-size-A", "1.3331", "--micrograph-size", "1024",
                     "--particles", "60", "--box", "128"],
                physics=["--noise-mode", "poisson", "--dose", "40", "--detector-mtf", "mtf/mtf_falcon4EC_300kV.star"]),
    "ucsf": dict(real=["micrographs/ucsf_1142/Ucsf_stack_1142_DW.mrc"], real_px=2.0, eval_real="heldout",
                 sim=["--structure", "models/6z6u.pdb", "--pixel-size-A", "2.0", "--micrograph-size", "512",
                      "--particles", "20", "--box", "96"],
                 physics=["--noise-mode", "poisson", "--dose", "40", "--detector-mtf", "mtf/mtf_k2_300kV.star"]),
    "10028": dict(real=[f"micrographs/cryoppp_10028/train/images/06{i}_10028.png" for i in (1, 2, 3, 4)],
                  real_px=5.36, eval_real=["micrographs/cryoppp_10028/valid/images/065_10028.png"],
                  sim=["--structure", "maps/aspire/clean70SRibosome_vol_65p.mrc", "--map-pixel-size-A", "9.77",
                       "--pixel-size-A", "10.72", "--micrograph-size", "512", "--particles", "75", "--box", "32"],
                  physics=["--noise-mode", "poisson", "--dose", "20", "--detector-mtf", "mtf/mtf_falcon2_300kV.star"]),
}
GAUSSIAN = ["--noise-mode", "snr", "--snr", "0.1"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def genem(args, env, log_file: Path) -> float:
    t0 = time.time()
    with open(log_file, "a") as f:
        f.write(" ".join(["genem", *map(str, args)]) + "\n")
        f.flush()
        r = subprocess.run([sys.executable, "-m", "genem", *map(str, args)], env=env, stdout=f, stderr=f)
    if r.returncode:
        raise RuntimeError(f"failed ({r.returncode}): genem {' '.join(map(str, args))} (see {log_file})")
    return time.time() - t0


def simulate(out: Path, src: dict, mode: str, seed: int, n: int, env, logf) -> Path:
    if not (out / "manifest.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        noise = GAUSSIAN if mode == "gaussian" else src["physics"]
        args = [DATA / a if a.startswith(("models/", "maps/", "mtf/")) else a for a in src["sim"] + noise]
        genem(["simulate", "--out", out, *args, "--n-micrographs", n, "--seed", seed, "--progress", "none"], env, logf)
    return out


def simulations(d: Path, source: str, mode: str, env) -> dict:
    """{mode: (training set, evaluation set)} for the Gaussian mode and ``mode`` (made when missing)."""
    logf = d / source / "simulate.log"
    logf.parent.mkdir(parents=True, exist_ok=True)
    return {m: (simulate(d / source / m / "sim_train", SOURCES[source], m, 1, 6, env, logf),
                simulate(d / source / m / "sim_eval", SOURCES[source], m, 2, 3, env, logf))
            for m in sorted({"gaussian", mode})}


def run_one(source: str, mode: str, d: Path, a, env) -> dict:
    src = SOURCES[source]
    w = d / source / mode
    w.mkdir(parents=True, exist_ok=True)
    logf = w / "commands.log"
    sims = simulations(d, source, mode, env)
    real = [DATA / p for p in src["real"]]
    model = w / "model"
    px = ["--real-pixel-size-A", src["real_px"]] if src["real_px"] else []
    limit = BUDGET["quick" if a.quick else "full"]["time_limit_min"]
    train_s = None
    if not (model / "model.pt").exists():
        shutil.rmtree(model, ignore_errors=True)
        log(f"{source}/{mode}: train")
        train_s = genem(["translate", "train", "--simulated", sims[mode][0], "--real", *real, "--out", model, *px,
                         *(["--time-limit-min", limit] if limit else []), "--progress", "none"], env, logf)
    translated = w / "translated"
    if not (translated / "manifest.json").exists():
        genem(["translate", "apply", "--model", model, "--simulated", sims[mode][1], "--out", translated,
               "--progress", "none"], env, logf)
    report = w / "realism.json"
    if not report.exists():
        log(f"{source}/{mode}: evaluate")
        ev = sorted((model / "heldout").glob("*.mrc")) if src["eval_real"] == "heldout" else \
            [DATA / p for p in src["eval_real"]]
        synth = [f"gaussian={sims['gaussian'][1]}"] + ([f"physics={sims[mode][1]}"] if mode != "gaussian" else [])
        evpx = px if src["eval_real"] != "heldout" else []
        genem(["evaluate", "realism", "--real", *ev, *sum((["--synthetic", s] for s in synth), []),
               "--synthetic", f"translated={translated}", "--out", report, "--seeds", a.seeds, *evpx,
               "--progress", "none"], env, logf)
    return summarise(source, mode, w, model, report, train_s)


def figure_before_after(path: Path, rep: dict, mode: str, crop_px: int = 256) -> None:
    """Real (held-out) | Gaussian simulation | [mode's simulation] | translated: one crop each, same display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sys.path.insert(0, str(REPO))
    from genem.translate.data import prepare_real_micrograph, prepare_simulated_micrograph, read_micrograph_any

    px = rep["pixel_size_A"]
    panels = [("real (held out)", prepare_real_micrograph(rep["real"][0], px,
                                                          pixel_size_A=rep.get("real_pixel_size_A")).image)]
    for name, files in rep["synthetic_sources"].items():
        panels.append((name, prepare_simulated_micrograph(read_micrograph_any(files[0])[0])))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
    for ax, (name, img) in zip(axes, panels):
        c = min(crop_px, *img.shape)
        t = img[:c, :c]
        lo, hi = np.percentile(t, [1, 99])
        ax.imshow(t, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{path.stem}: {c} px crops at {px:.3g} A/px", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def summarise(source, mode, w, model, report, train_s) -> dict:
    rep = json.loads(report.read_text())
    if SOURCES[source]["real_px"] and SOURCES[source]["eval_real"] != "heldout":
        rep["real_pixel_size_A"] = SOURCES[source]["real_px"]
    meta = json.loads((model / "model.json").read_text())
    g, t = rep["synthetic"]["gaussian"], rep["synthetic"]["translated"]
    cut = 1 - t["raps_distance_log10"] / g["raps_distance_log10"]
    row = {"source": source, "mode": mode, "n_real_tiles": rep["n_real_tiles"], "tile_px": rep["tile_px"],
           "train_steps": meta.get("steps"), "best_validated_step": meta.get("best_validated_step"),
           "stop_reason": meta.get("stop_reason"), "train_seconds": train_s,
           "raps": {k: v["raps_distance_log10"] for k, v in rep["synthetic"].items()}, "raps_cut": cut,
           "c2st": {k: v["c2st"] for k, v in rep["synthetic"].items()},
           "c2st_strong": {k: v["c2st_strong"] for k, v in rep["synthetic"].items()},
           "artefacts": {k: v["artefacts"]["artefacts"] for k, v in rep["synthetic"].items()},
           "bands_translated": t["bands"]}
    row["pass"] = {"raps_cut": cut >= TARGETS["raps_cut"],
                   "c2st_strong": t["c2st_strong"]["max"] <= TARGETS["c2st_strong_max"],
                   "no_artefacts": not t["artefacts"]["artefacts"]}
    shutil.copy(report.with_suffix(".png"), w.parent.parent / f"{source}_{mode}_spectra.png")
    figure_before_after(w.parent.parent / f"{source}_{mode}_before_after.png", rep, mode)
    return row


def verdict(passed: dict) -> str:
    return "yes" if all(passed.values()) else "no: " + ", ".join(k for k, v in passed.items() if not v)


def write_report(d: Path, rows: list[dict], a) -> None:
    lines = ["| source | input | steps (best) | RAPS gaussian -> translated (cut) | strong C2ST gaussian | "
             "strong C2ST translated (seeds) | artefacts translated | pass |", "|---" * 8 + "|"]
    for r in rows:
        s = r["c2st_strong"]
        acc = " / ".join(f"{x:.2f}" for x in s["translated"]["accuracy"])
        lines.append(f"| {r['source']} | {r['mode']} | {r['train_steps']} ({r['best_validated_step']}) | "
                     f"{r['raps']['gaussian']:.3f} -> {r['raps']['translated']:.3f} ({100 * r['raps_cut']:.0f} %) | "
                     f"{s['gaussian']['mean']:.2f} | {acc} | {', '.join(r['artefacts']['translated']) or 'none'} | "
                     f"{verdict(r['pass'])} |")
    md = "\n".join(lines) + "\n"
    (d / "report.md").write_text(md)
    (d / "report.json").write_text(json.dumps({"budget": "quick" if a.quick else "full", "targets": TARGETS,
                                               "time_limit_min": BUDGET["quick" if a.quick else "full"],
                                               "rows": rows}, indent=1) + "\n")
    print(md)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="training capped at 10 minutes per run")
    ap.add_argument("--sources", default="epu,ucsf,10028")
    ap.add_argument("--modes", default="gaussian,physics")
    ap.add_argument("--runs", help="explicit SOURCE/MODE pairs, comma-separated (instead of sources x modes)")
    ap.add_argument("--jobs", type=int, default=3, help="runs at once (each with --threads torch threads)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--data", help="shared data folder (default: ../shared/data)")
    a = ap.parse_args(argv)
    global DATA
    DATA = Path(a.data).resolve() if a.data else DATA
    if not DATA.is_dir():
        sys.exit(f"shared data not found at {DATA}")
    d = Path(a.out)
    d.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    todo = [tuple(r.split("/")) for r in a.runs.split(",")] if a.runs else \
        [(s, m) for s in a.sources.split(",") for m in a.modes.split(",")]
    for s, m in todo:  # every simulation first, one at a time (runs share the Gaussian ones)
        simulations(d, s, m, env)
    with ThreadPoolExecutor(a.jobs) as pool:
        futures = {pool.submit(run_one, s, m, d, a, env): (s, m) for s, m in todo}
        rows = []
        for f, (s, m) in futures.items():
            try:
                rows.append(f.result())
            except RuntimeError as e:
                log(f"{s}/{m}: {e}")
    write_report(d, rows, a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
