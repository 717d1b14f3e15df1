"""Does GenEM data train a picker that works on real micrographs? The EMPIAR-10028 benchmark of issue 16.

    python benchmarks/picking_10028.py --out DIR [--quick] [--seeds N] [--data DIR] [--threads N] [--topaz EXE]

Data: CryoPPP's EMPIAR-10028 renders (``../shared/data/micrographs/cryoppp_10028``: 8-bit 1024^2 PNG at ~5.36 A/px,
label masks; 4 train, 1 valid, 5 test micrographs). Every choice below is made on train/valid; the test split is
read only to score the final picks.

1. Geometry (train+valid label masks): particle diameter = median area-equivalent diameter of the isolated label
   disks (``genem.pick.data.disk_diameter_px``, median over the 5 masks); particles per micrograph (mean, sd) and
   the closest spacing (5th percentile of nearest-neighbour distances) from the mask centres.
2. Structure: the 70S ribosome map (header pixel size 0) at the map pixel size that makes the simulated masks'
   particle diameter (median area-equivalent diameter of the label masks ``genem simulate`` writes: projection
   > 5 % of its maximum, as ``genem pick train`` measures it) equal to the labelled one: one noise-free calibration
   simulation at a guess, scaled linearly, checked by a second one.
3. Imaging (train+valid micrographs): defocus per micrograph from its power spectrum (Thon rings against the
   engine's CTF, grid search), range = min..max; SNR per micrograph at the simulation pixel size = (variance inside
   the label disks - variance outside) / variance outside, after removing the slow background; the Gaussian arm
   draws its SNR in that range, the physics arm's dose is scaled so that the simulator's recorded SNR matches the
   median (shot-noise SNR is proportional to dose). Ice: the simulator's random ice (its thickness cannot be read
   from 8-bit renders of unknown contrast stretch); MTF: RELION's Falcon II curve (the detector of EMPIAR-10028).
4. Arms (same picker geometry and training steps): dog (training-free; its diameter scale chosen on train+valid),
   gaussian (simple mode), physics (ice, dose, Poisson, MTF), translated (the better of gaussian/physics on VALID,
   through ``genem translate train`` on the unlabelled train+valid PNGs with its defaults and a shortened step
   count), real (the 4 labelled train micrographs), translated_finetuned_real (``--init`` translated, then the 4
   labelled micrographs), topaz (Topaz's own picker trained on the translated arm's data, when a `topaz`
   executable of its own environment is given or on PATH: benchmarks/topaz_picker.py).
5. Report: AUPRC and best F1 on the 5 test micrographs (``genem evaluate picking``, radius = half the labelled
   diameter), mean +- sd over seeds -> DIR/report.json, DIR/report.md, DIR/picking_10028.png. Test picks of seed 0:
   DIR/<arm>/picks/<stem>.star (other seeds: DIR/<arm>_seedK/picks/).

Simulations run at twice the real pixel size (10.72 A/px, 512^2 = the real field of view); the picker works at
diameter / 16 (~19 A/px). A seed changes the simulations (seed 1000 + seed) and the pickers; the translator is
trained once, on seed 0's simulation. Every step goes through the ``genem`` command line (DIR/commands.sh); a
re-run into the same DIR skips the steps whose output was made by the same command (DIR/steps.json; adding
seeds reuses seed 0, a changed choice of the translated arm trains its own translator).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genem.io import read_star  # noqa: E402
from genem.io.images import read_image  # noqa: E402
from genem.pick.data import centres_from_mask, dataset_diameter_A, disk_diameter_px, read_mask  # noqa: E402
from benchmarks.topaz_picker import find_topaz, run_topaz_arm  # noqa: E402

MAP = "maps/aspire/clean70SRibosome_vol_65p.mrc"
MTF = "mtf/mtf_falcon2_300kV.star"
REAL_PX_A = 5.36          # CryoPPP renders of EMPIAR-10028: the 1.34 A/px micrographs binned 4x
SIM_BIN = 2               # simulate at 2 x the real pixel size (the picker bins to ~19 A/px anyway)
DOG_FACTORS = (0.7, 0.85, 1.0, 1.15, 1.3)  # DoG diameter scales x the labelled diameter, chosen on train+valid
ARMS = ("dog", "gaussian", "physics", "translated", "real", "translated_finetuned_real", "topaz")
BUDGET = {  # quick: one seed of every arm in < 60 min on 2 cores; full: the default translator, longer pickers
    "quick": dict(n_mics=12, pick_steps=800, translate_steps=600, seeds=1),
    "full": dict(n_mics=24, pick_steps=2000, translate_steps=4000, seeds=3),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Runner:
    """Runs ``genem`` commands (skipping those whose output exists) and records them in DIR/commands.sh."""

    def __init__(self, out: Path, threads: int):
        self.out = out
        self.env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        self.times: dict[str, float] = {}

    def genem(self, *args, done: Path | None = None, tag: str = "") -> None:
        """Run ``genem ARGS``, unless ``done`` exists and was made by this very command (DIR/steps.json)."""
        self.command([sys.executable, "-m", "genem", *args], done=done, tag=tag or str(args[0]),
                     line=" ".join(["genem", *map(str, args)]))

    def command(self, cmd: list, *, done: Path | None = None, tag: str = "", line: str | None = None) -> None:
        """Run ``cmd`` (recorded in DIR/commands.sh as ``line``), unless ``done`` exists and was made by this very
        command (DIR/steps.json)."""
        cmd = [str(c) for c in cmd]
        line = line or " ".join(cmd)
        with open(self.out / "commands.sh", "a") as f:
            f.write(line + "\n")
        steps_file = self.out / "steps.json"
        steps = json.loads(steps_file.read_text()) if steps_file.is_file() else {}
        if done is not None and done.exists() and steps.get(str(done)) == line:
            return
        t0 = time.time()
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
        tag = tag or Path(cmd[0]).name
        self.times[tag] = self.times.get(tag, 0.0) + time.time() - t0
        if done is not None:
            steps[str(done)] = line
            steps_file.write_text(json.dumps(steps, indent=0))


# ---------------------------------------------------------------- estimation on train + valid only
def measure_labels(split_dirs) -> dict:
    diam, counts, nn = [], [], []
    from scipy.spatial import cKDTree

    for d in split_dirs:
        for lab in sorted((d / "labels").glob("*.png")):
            mask = read_mask(lab)
            diam.append(disk_diameter_px(mask))
            c = centres_from_mask(mask, diam[-1])
            counts.append(len(c))
            nn += list(cKDTree(c).query(c, k=2)[0][:, 1])
    d_px = float(np.median(diam))
    return {"diameter_px": d_px, "diameter_A": d_px * REAL_PX_A, "per_mask_diameter_px": diam,
            "counts": counts, "count_mean": float(np.mean(counts)), "count_sd": float(np.std(counts, ddof=1)),
            "min_separation_A": float(np.percentile(nn, 5)) * REAL_PX_A,
            "rule": "diameter: median over train+valid masks of the area-equivalent diameter of isolated disks; "
                    "spacing: 5th percentile of nearest-neighbour centre distances"}


def fit_defocus(image: np.ndarray) -> float:
    """Underfocus (A) whose CTF^2 zeros best match the Thon rings of ``image`` (grid search, correlation of the
    high-passed log power spectrum with the high-passed CTF^2 between 1/40 and 1/11.5 A^-1)."""
    import torch
    from scipy.ndimage import gaussian_filter1d

    from genem.metrics.realism import compute_raps_2d
    from genem.physics.ctf import CTFParams, compute_ctf_2d

    n = 256
    h, w = (s // n * n for s in image.shape)
    tiles = image[:h, :w].reshape(h // n, n, w // n, n).transpose(0, 2, 1, 3).reshape(-1, n, n)
    freq, raps = compute_raps_2d(tiles)
    logp = np.log(raps.mean(0))
    u = np.asarray(freq) / REAL_PX_A
    band = (u > 1 / 40) & (u < 1 / 11.5)
    grid = np.arange(5000.0, 45001.0, 100.0)
    with torch.no_grad():
        ctf = compute_ctf_2d([CTFParams(d, d) for d in grid], (n, n), REAL_PX_A).numpy()[:, 0, : n // 2]
    hp = lambda y: y - gaussian_filter1d(y, 6, axis=-1)  # noqa: E731
    a = hp(logp)[band]
    b = hp(ctf ** 2)[:, band]
    a = (a - a.mean()) / a.std()
    b = (b - b.mean(1, keepdims=True)) / b.std(1, keepdims=True)
    return float(grid[int(np.argmax(b @ a))])


def measure_snr(image: np.ndarray, mask: np.ndarray, diameter_px: float) -> float:
    """(var inside disks - var outside) / var outside at the simulation pixel size, slow background removed."""
    from scipy.ndimage import gaussian_filter

    from genem.pick.images import fourier_bin

    img, _ = fourier_bin(image, REAL_PX_A, REAL_PX_A * SIM_BIN)
    m = mask[::SIM_BIN, ::SIM_BIN][: img.shape[0], : img.shape[1]]
    img = img - gaussian_filter(img, 2 * diameter_px / SIM_BIN)
    v_in, v_out = float(img[m].var()), float(img[~m].var())
    return max(v_in - v_out, 1e-6) / v_out


def estimate_imaging(split_dirs, diameter_px: float) -> dict:
    defoci, snrs = [], []
    for d in split_dirs:
        for im in sorted((d / "images").glob("*.png")):
            img, _ = read_image(im)
            defoci.append(fit_defocus(img))
            snrs.append(measure_snr(img, read_mask(d / "labels" / im.name), diameter_px))
    return {"defocus_A_per_micrograph": defoci, "defocus_A": (min(defoci), max(defoci)),
            "snr_per_micrograph": snrs, "snr": (min(snrs), max(snrs)), "snr_median": float(np.median(snrs))}


# ---------------------------------------------------------------- simulation
def sim_args(geo: dict, structure: str, map_px: float, n: int, seed: int) -> list:
    px = REAL_PX_A * SIM_BIN
    return ["--structure", structure, "--map-pixel-size-A", f"{map_px:.4f}", "--n-micrographs", n,
            "--micrograph-size", 1024 // SIM_BIN, "--pixel-size-A", px,
            "--box", 2 * int(np.ceil(0.6 * geo["diameter_A"] / px)), "--particles", round(geo["count_mean"]),
            "--particles-sd", f"{geo['count_sd']:.2f}", "--min-separation-A", f"{geo['min_separation_A']:.1f}",
            "--seed", seed, "--progress", "none"]


def calibrate_map(run: Runner, work: Path, geo: dict, structure: str) -> dict:
    """Map pixel size whose simulated masks have the labelled diameter (diameter scales with the map's pixel)."""
    guess, rows = 5.0, []
    for k in range(2):
        out = work / f"calibrate_{k}"
        run.genem("simulate", "--out", out, *sim_args(geo, structure, guess, 2, 0), "--ice", "none",
                  "--noise-mode", "none", done=out / "manifest.json", tag="simulate")
        from genem.io import GenemDataset

        measured = dataset_diameter_A(GenemDataset.open(out))
        rows.append({"map_pixel_size_A": guess, "simulated_diameter_A": measured})
        guess = guess * geo["diameter_A"] / measured
    return {"map_pixel_size_A": rows[-1]["map_pixel_size_A"], "steps": rows,
            "rule": "simulated mask diameter (median area-equivalent, projection > 5 % of max) = labelled diameter"}


def calibrate_dose(run: Runner, work: Path, geo, img, structure, map_px) -> dict:
    d0, out = 20.0, work / "calibrate_dose"
    run.genem("simulate", "--out", out, *sim_args(geo, structure, map_px, 2, 0), *physics_flags(img, d0),
              done=out / "manifest.json", tag="simulate")
    rec = float(np.median(read_star(out / "micrographs.star")["micrographs"]["rlnGenemSnr"]))
    return {"dose_e_per_A2": d0 * img["snr_median"] / rec, "recorded_snr_at": [d0, rec],
            "rule": "dose x (measured real SNR / simulator's recorded shot-noise SNR at 20 e/A^2)"}


def physics_flags(img: dict, dose: float) -> list:
    lo, hi = img["defocus_A"]
    return ["--noise-mode", "poisson", "--dose", f"{dose:.3f}", "--ice", "random", "--defocus-A", f"{lo:.0f},{hi:.0f}",
            "--detector-mtf", DATA / MTF]


def gaussian_flags(img: dict) -> list:
    lo, hi = img["defocus_A"]
    return ["--noise-mode", "snr", "--snr", f"{img['snr'][0]:.4f},{img['snr'][1]:.4f}", "--ice", "none",
            "--defocus-A", f"{lo:.0f},{hi:.0f}"]


# ---------------------------------------------------------------- pickers and scoring
def evaluate(run: Runner, picks: Path, truth: Path, report: Path) -> dict:
    made = picks / "picks.json"
    if report.exists() and made.exists() and report.stat().st_mtime < made.stat().st_mtime:
        report.unlink()  # the picks are newer than their score
    run.genem("evaluate", "picking", "--picks", picks, "--truth", truth, "--out", report, done=report, tag="evaluate")
    return json.loads(report.read_text())


def pick(run: Runner, model_args: list, images: Path, out: Path) -> Path:
    run.genem("pick", "apply", *model_args, "--micrographs", images, "--pixel-size-A", REAL_PX_A, "--threshold", 0,
              "--out", out, "--progress", "none", done=out / "picks.json", tag="pick apply")
    return out


def dog_args(factor: float, diameter_A: float) -> list:
    """The DoG picker's arguments at ``factor`` x the labelled diameter."""
    return ["--method", "dog", "--diameter-A", f"{factor * diameter_A:.2f}"]


def choose_dog_factor(run: Runner, diameter_A: float, splits: dict, work: Path, prefix: str = "",
                      factors=DOG_FACTORS) -> tuple[float, dict]:
    """The DoG diameter scale with the best mean AUPRC over ``splits`` ({name: (images, labels)}: train and valid
    only, never test); returns it and every scale's score."""
    scores = {}
    for f in factors:
        scores[f] = float(np.mean([evaluate(run, pick(run, dog_args(f, diameter_A), images,
                                                      work / f"{prefix}dog_{f}_{name}"),
                                            labels, work / f"eval_{prefix}dog_{f}_{name}.json")["auprc"]
                                   for name, (images, labels) in splits.items()]))
    return max(scores, key=scores.get), scores


def valid_scores(run: Runner, model_args: list, valid_dir: Path, folder: Path) -> dict:
    """Pick the valid micrograph(s) into ``folder`` and score them: AUPRC, best F1, highest recall reached."""
    r = evaluate(run, pick(run, model_args, valid_dir / "images", folder), valid_dir / "labels",
                 folder.with_name(f"eval_{folder.name}.json"))
    return {"auprc": r["auprc"], "f1": r["f1"], "max_recall": max(r["curve"]["recall"], default=0.0)}


def train(run: Runner, out: Path, data_args: list, geo: dict, steps: int, seed: int) -> Path:
    run.genem("pick", "train", *data_args, "--out", out, "--steps", steps, "--seed", seed,
              "--diameter-A", f"{geo['diameter_A']:.2f}", "--pixel-size-A", f"{geo['diameter_A'] / 16:.3f}",
              "--progress", "none", done=out / "picker.json", tag="pick train")
    return out


def main(argv=None) -> int:
    global DATA
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--quick", action="store_true", help="one seed of every arm, short training (< 60 min, 2 cores)")
    p.add_argument("--seeds", type=int, help="number of seeds (default: 1 with --quick, else 3)")
    p.add_argument("--data", type=Path, help="shared data folder (default: ../shared/data from the repository)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pick-steps", type=int, help="picker training steps (override the budget)")
    p.add_argument("--translate-steps", type=int, help="translator training steps (override the budget)")
    p.add_argument("--n-micrographs", type=int, help="simulated micrographs per arm (override the budget)")
    p.add_argument("--topaz", help="the `topaz` executable of a Topaz environment for arm (g) (default: `topaz` on "
                                   "PATH; skipped with the reason when there is none that runs)")
    a = p.parse_args(argv)
    budget = dict(BUDGET["quick" if a.quick else "full"])
    for k, v in (("seeds", a.seeds), ("pick_steps", a.pick_steps), ("translate_steps", a.translate_steps),
                 ("n_mics", a.n_micrographs)):
        if v is not None:
            budget[k] = v
    DATA = (a.data or REPO.parent / "shared" / "data").resolve()
    root = DATA / "micrographs" / "cryoppp_10028"
    if not root.is_dir():
        sys.exit(f"{root}: not found (give --data)")
    out, work = a.out.resolve(), a.out.resolve() / "work"
    work.mkdir(parents=True, exist_ok=True)
    run, started = Runner(out, a.threads), time.time()
    train_dir, valid_dir, test_dir = (root / s for s in ("train", "valid", "test"))
    structure = str(DATA / MAP)

    log("measuring labels and imaging on train+valid")
    geo = measure_labels([train_dir, valid_dir])
    img = estimate_imaging([train_dir, valid_dir], geo["diameter_px"])
    cal = calibrate_map(run, work, geo, structure)
    dose = calibrate_dose(run, work, geo, img, structure, cal["map_pixel_size_A"])
    log(f"diameter {geo['diameter_A']:.1f} A, map {cal['map_pixel_size_A']:.3f} A/px, defocus {img['defocus_A']}, "
        f"SNR {img['snr']}, dose {dose['dose_e_per_A2']:.2f} e/A^2")
    seeds, steps = range(budget["seeds"]), budget["pick_steps"]
    real_args = ["--real-labels", train_dir / "labels", "--real-micrographs", train_dir / "images",
                 "--real-pixel-size-A", REAL_PX_A]

    # (a) DoG: diameter scale chosen on train+valid
    dog_f, dog_valid = choose_dog_factor(run, geo["diameter_A"], {d.name: (d / "images", d / "labels")
                                                                  for d in (train_dir, valid_dir)}, work)
    models = {"dog": {0: dog_args(dog_f, geo["diameter_A"])}}

    # (b), (c): simulate and train; choose the better on VALID
    sims = {}
    for arm, flags in (("gaussian", gaussian_flags(img)), ("physics", physics_flags(img, dose["dose_e_per_A2"]))):
        models[arm] = {}
        for s in seeds:
            sims[arm, s] = work / f"sim_{arm}_seed{s}"
            run.genem("simulate", "--out", sims[arm, s], *sim_args(geo, structure, cal["map_pixel_size_A"],
                                                                   budget["n_mics"], 1000 + s), *flags,
                      done=sims[arm, s] / "manifest.json", tag="simulate")
            m = train(run, work / f"model_{arm}_seed{s}", ["--data", sims[arm, s]], geo, steps, s)
            models[arm][s] = ["--model", m]
        log(f"{arm}: trained")
    valid_auprc = {arm: float(np.mean([valid_scores(run, models[arm][s], valid_dir, work / f"valid_{arm}_seed{s}")
                                       ["auprc"] for s in seeds])) for arm in ("gaussian", "physics")}
    base = max(valid_auprc, key=valid_auprc.get)
    log(f"valid AUPRC {valid_auprc}: translating {base}")

    # (d) translator on the unlabelled train+valid micrographs, applied to every seed's simulation of the base arm
    tmodel = work / f"translator_{base}"
    reals = sorted((train_dir / "images").glob("*.png")) + sorted((valid_dir / "images").glob("*.png"))
    run.genem("translate", "train", "--simulated", sims[base, 0], "--real", *reals, "--real-pixel-size-A",
              REAL_PX_A, "--out", tmodel, "--steps", budget["translate_steps"], "--progress", "none",
              done=tmodel / "model.pt", tag="translate train")
    models["translated"], models["translated_finetuned_real"], models["real"] = {}, {}, {}
    for s in seeds:
        tsim = work / f"sim_translated_{base}_seed{s}"
        run.genem("translate", "apply", "--model", tmodel, "--simulated", sims[base, s], "--out", tsim,
                  "--progress", "none", done=tsim / "manifest.json", tag="translate apply")
        m = train(run, work / f"model_translated_{base}_seed{s}", ["--data", tsim], geo, steps, s)
        models["translated"][s] = ["--model", m]
        models["real"][s] = ["--model", train(run, work / f"model_real_seed{s}", real_args, geo, steps, s)]
        models["translated_finetuned_real"][s] = ["--model", train(
            run, work / f"model_translated_finetuned_real_{base}_seed{s}", [*real_args, "--init", m], geo, steps, s)]
    log("translated, real, fine-tuned: trained")
    valid = {arm: [valid_scores(run, models[arm][s], valid_dir, work / f"valid_{arm}_seed{s}") for s in seeds]
             for arm in ("gaussian", "physics", "translated", "real", "translated_finetuned_real")}
    realism = out / "realism.json"  # diagnosis only: held-out strips of the train+valid micrographs vs seed 0's sets
    run.genem("evaluate", "realism", "--real", *sorted((tmodel / "heldout").glob("*.mrc")),
              *[f"--synthetic={arm}={sims[arm, 0]}" for arm in ("gaussian", "physics")],
              f"--synthetic=translated={work / f'sim_translated_{base}_seed0'}", "--out", realism,
              done=realism, tag="realism")

    results = score_test(run, models, test_dir, out, work)
    topaz, why = find_topaz(a.topaz)
    skipped = {} if topaz else {"topaz": why}
    if topaz:  # (g) Topaz's own picker, in its own environment, trained on the data of (d)
        rows = []
        for s in seeds:
            folder = out / ("topaz" if s == 0 else f"topaz_seed{s}")
            run_topaz_arm(run, topaz, work / f"sim_translated_{base}_seed{s}", test_dir / "images",
                          work / f"topaz_{base}_seed{s}", folder, test_pixel_size_A=REAL_PX_A,
                          particles_per_micrograph=geo["count_mean"], diameter_A=geo["diameter_A"], steps=steps,
                          threads=a.threads)
            rows.append(score_folder(run, folder, test_dir, work, "topaz", s))
        results["topaz"] = rows
        log("topaz: trained and scored")
    else:
        log(f"topaz skipped: {why}")
    report = {"budget": budget, "quick": a.quick, "labels": geo, "imaging": img, "map": cal, "dose": dose,
              "dog_diameter_factor": dog_f, "dog_train_valid_auprc": dog_valid, "valid_auprc": valid_auprc,
              "translated_from": base, "skipped": skipped, "valid": valid,
              "realism": json.loads(realism.read_text())["synthetic"]}
    write_report(out, report, results, run, started, test_dir, geo)
    figure_false_picks(out / "picking_10028_valid.png", work / f"valid_{base}_seed0", valid_dir, geo, base)
    return 0


def score_test(run: Runner, models: dict, test_dir: Path, out: Path, work: Path) -> dict:
    """Pick the test micrographs with every arm and seed (seed 0 into DIR/<arm>, others DIR/<arm>_seedK) and score
    them against the test labels: {arm: [per-seed rows]}."""
    results = {}
    for arm, per_seed in models.items():
        rows = []
        for s, margs in per_seed.items():
            folder = out / (arm if s == 0 else f"{arm}_seed{s}")
            pick(run, margs, test_dir / "images", folder)
            rows.append(score_folder(run, folder, test_dir, work, arm, s))
        results[arm] = rows
    return results


def score_folder(run: Runner, folder: Path, test_dir: Path, work: Path, arm: str, seed: int) -> dict:
    """One arm's and seed's test picks in ``folder`` scored against the test labels."""
    r = evaluate(run, folder, test_dir / "labels", work / f"eval_test_{arm}_seed{seed}.json")
    return {"seed": seed, "auprc": r["auprc"], "f1": r["f1"], "precision": r["precision"], "recall": r["recall"],
            "threshold": r["threshold"], "curve": r["curve"], "max_recall": max(r["curve"]["recall"], default=0.0),
            "picks": str(folder / "picks")}


def write_report(out: Path, report: dict, results: dict, run: Runner, started: float, test_dir: Path,
                 geo: dict) -> dict:
    """DIR/report.json (+ mean and sd over seeds, targets, times), DIR/report.md (printed), DIR/picking_10028.png."""
    summary = {arm: {k: (float(np.mean([r[k] for r in rows])),
                         float(np.std([r[k] for r in rows], ddof=1)) if len(rows) > 1 else None)
                     for k in ("auprc", "f1", "max_recall")} for arm, rows in results.items()}
    seconds = {"total": time.time() - started, **run.times}
    if (out / "report.json").is_file():  # a re-run only did what was missing: the times add up
        for k, v in json.loads((out / "report.json").read_text()).get("seconds", {}).items():
            seconds[k] = seconds.get(k, 0.0) + v
    report = {**report, "summary": summary, "targets": targets(summary), "arms": results, "seconds": seconds}
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    table = markdown(summary, report)
    (out / "report.md").write_text(table)
    print(table)
    figure(out / "picking_10028.png", results, test_dir, geo)
    return report


def targets(summary: dict) -> dict:
    """The issue's three targets (None where an arm is missing, or for the spread with one seed); "spread" = the
    larger sd over seeds."""
    def get(arm):
        return summary[arm]["auprc"] if arm in summary else None

    t, g, f, r = get("translated"), get("gaussian"), get("translated_finetuned_real"), get("real")
    return {"translated_auprc_ge_0.90": None if t is None else t[0] >= 0.90,
            "translated_beats_gaussian_by_more_than_spread": None if t is None or g is None or t[1] is None
            or g[1] is None else bool(t[0] - g[0] > max(t[1], g[1])),  # no spread from one seed
            "finetuned_beats_real": None if f is None or r is None else bool(f[0] > r[0])}


def markdown(summary: dict, report: dict) -> str:
    def fmt(v):
        return f"{v[0]:.3f}" + (f" +- {v[1]:.3f}" if v[1] is not None else "")

    lines = ["| arm | seeds | test AUPRC | test best F1 | highest recall |", "|---|---|---|---|---|"]
    for arm, s in summary.items():
        lines.append(f"| {arm} | {len(report['arms'][arm])} | {fmt(s['auprc'])} | {fmt(s['f1'])} | "
                     f"{fmt(s['max_recall'])} |")
    for arm, why in report.get("skipped", {}).items():
        lines.append(f"| {arm} | skipped: {why} | | | |")
    for arm, r in report.get("realism", {}).items():
        lines.append(f"\nrealism of {arm} against held-out real strips (train+valid): C2ST accuracy "
                     f"{r['c2st_accuracy']:.3f} (0.5 = indistinguishable), "
                     f"RAPS distance {r['raps_distance_log10']:.3f}")
    lines.append(f"\ntranslated from: {report.get('translated_from')} (valid AUPRC {report.get('valid_auprc')}); "
                 f"total {report['seconds']['total'] / 60:.1f} min; targets {report['targets']}")
    return "\n".join(lines) + "\n"


def figure(path: Path, results: dict, test_dir: Path, geo: dict) -> None:
    """PR curves (seed 0) of every arm, and the picks of the translated and gaussian arms on one test micrograph
    (at each arm's best-F1 threshold on the test split: a picture, nothing is chosen with it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    from genem.pick import read_coordinates_star, read_centres

    fig = Figure(figsize=(15, 5), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 3, 1)
    for arm, rows in results.items():
        c = rows[0]["curve"]
        ax.plot(c["recall"], c["precision"], lw=1.4, label=f"{arm} ({rows[0]['auprc']:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="5 test micrographs, seed 0")
    ax.legend(fontsize=7, loc="lower left")
    stem = sorted(p.stem for p in (test_dir / "images").glob("*.png"))[0]
    image, _ = read_image(test_dir / "images" / f"{stem}.png")
    truth = read_centres(test_dir / "labels" / f"{stem}.png", geo["diameter_px"])
    r = geo["diameter_px"] / 2
    shown = [arm for arm in ("translated", "gaussian") if arm in results] or list(results)[:2]
    for k, arm in enumerate(shown):
        ax = fig.add_subplot(1, 3, 2 + k)
        lo, hi = np.percentile(image, [1, 99])
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        xy, fom = read_coordinates_star(Path(results[arm][0]["picks"]) / f"{stem}.star")
        cut = results[arm][0]["threshold"]  # best-F1 threshold, for display only
        keep = fom >= (cut if cut is not None else np.inf)
        for x, y in truth:
            ax.add_patch(Circle((x, y), r, fill=False, color="lime", lw=0.7))
        for x, y in xy[keep]:
            ax.add_patch(Circle((x, y), r * 0.5, fill=False, color="red", lw=0.9))
        ax.set_title(f"{arm}: picks at its best-F1 cut (red), labels (green), {stem}", fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)


def figure_false_picks(path: Path, picks: Path, split_dir: Path, geo: dict, arm: str, n: int = 8) -> None:
    """Diagnosis on the VALID micrograph: the ``n`` highest-scoring picks of ``arm`` that match no label (red
    squares) over the labels (green outlines)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle, Rectangle

    from genem.pick import match_picks, read_coordinates_star, read_centres

    stem = sorted(p.stem for p in (split_dir / "images").glob("*.png"))[0]
    image, _ = read_image(split_dir / "images" / f"{stem}.png")
    truth = read_centres(split_dir / "labels" / f"{stem}.png", geo["diameter_px"])
    xy, fom = read_coordinates_star(picks / "picks" / f"{stem}.star")
    r = geo["diameter_px"] / 2
    false = np.flatnonzero(~match_picks(xy, fom, truth, r))
    false = false[np.argsort(-fom[false], kind="stable")][:n]
    fig = Figure(figsize=(7, 7.3), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = np.percentile(image, [1, 99])
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
    for x, y in truth:
        ax.add_patch(Circle((x, y), r, fill=False, color="lime", lw=0.7))
    for k in false:
        ax.add_patch(Rectangle((xy[k, 0] - r, xy[k, 1] - r), 2 * r, 2 * r, fill=False, color="red", lw=1.2))
    ax.set_title(f"valid {stem}: labels (green); the {arm} picker's {len(false)} best-scoring picks without a label "
                 f"(red, scores {fom[false].min():.2f}-{fom[false].max():.2f})", fontsize=8)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)


DATA = Path()

if __name__ == "__main__":
    sys.exit(main())
