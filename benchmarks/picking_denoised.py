"""Does denoising real micrographs change picking? EMPIAR-10028 raw vs GenEM-denoised vs Topaz-denoised (issue 17).

    python benchmarks/picking_denoised.py --out DIR [--seeds 3] [--steps 800] [--threads 2] [--data DIR]

The same CryoPPP renders as ``benchmarks/picking_10028.py`` (8-bit 1024^2 PNG at 5.36 A/px; 4 train, 1 valid, 5
test micrographs with label masks), in three versions:
- ``raw``: the renders as they are (written as MRC at 5.36 A/px, the same pixels);
- ``genem``: ``genem denoise apply --micrographs`` with the shipped model and its default route, in tiles, on
  the renders' own pixels taken to be at the model's 3.54 A/px (its pixel-size rule refuses 5.36 A/px, 1.51x
  coarser than the model, beyond its 1.5x upsampling limit; Topaz too runs on the input's pixels);
- ``topaz``: Topaz-Denoise's general model (``unet_L2_v0.2.2``, what ``topaz denoise --model unet`` runs) on each
  whole micrograph (``genem.restore.baselines.topaz_denoise``), skipped with the reason when topaz-em is absent.

On each version, two pickers, with everything chosen on train/valid and the test split only scored:
- ``dog``: the training-free DoG picker, its diameter scale chosen among 0.7-1.3 x on train+valid AUPRC;
- ``real``: the GenEM picker trained on the 4 labelled train micrographs of that version (``--steps`` steps, one
  training per seed).
Report: test AUPRC, best F1 and highest recall (``genem evaluate picking``, radius half the labelled diameter),
mean +- sd over seeds -> DIR/report.json and DIR/report.md (printed). Geometry (diameter, counts) is measured from
the train+valid label masks as in ``picking_10028.py``. A re-run into the same DIR skips what is done.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.picking_10028 import (  # noqa: E402
    DOG_FACTORS, REAL_PX_A, Runner, choose_dog_factor, dog_args, evaluate, log, measure_labels, pick, train)
from genem.io import read_image, write_mrc, write_star  # noqa: E402

SPLITS = ("train", "valid", "test")


def write_raw(data: Path, out: Path) -> None:
    """Every split's renders as MRC at 5.36 A/px (same pixels), and a micrographs STAR per split."""
    for split in SPLITS:
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        names = []
        for png in sorted((data / split / "images").glob("*.png")):
            target = folder / f"{png.stem}.mrc"
            if not target.exists():
                write_mrc(target, read_image(png)[0], REAL_PX_A)
            names.append(f"{split}/{target.name}")
        import pandas as pd

        write_star(out / f"{split}.star", {"micrographs": pd.DataFrame(
            {"rlnMicrographName": names, "rlnMicrographPixelSize": [REAL_PX_A] * len(names)})})


def denoise_genem(run: Runner, raw: Path, out: Path) -> None:
    """The shipped model's default route on the renders' own pixels, taken to be at the model's pixel size: its
    rule refuses 5.36 A/px (1.51x coarser than its 3.54 A/px, the limit is 1.5x), and this is how Topaz runs too."""
    from genem.restore import Denoiser

    model_px = Denoiser.load().pixel_size_A
    for split in SPLITS:
        run.genem("denoise", "apply", "--micrographs", raw / f"{split}.star", "--out", out / split,
                  "--pixel-size-A", model_px, "--progress", "none", done=out / split / f"{split}_denoised.star", tag="genem denoise")


def denoise_topaz(raw: Path, out: Path, threads: int) -> float | None:
    """Topaz-Denoise's general model on each whole micrograph not yet denoised; returns the seconds it took, or
    None when every micrograph was already there."""
    import torch

    from genem.restore.baselines import load_topaz, topaz_denoise

    model, t0, ran = load_topaz(), time.time(), False
    torch.set_num_threads(threads)
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
        for mrc in sorted((raw / split).glob("*.mrc")):
            target = out / split / mrc.name
            if not target.exists():
                img, _ = read_image(mrc)
                write_mrc(target, topaz_denoise(torch.from_numpy(img)[None], model)[0].numpy(), REAL_PX_A)
                ran = True
    return time.time() - t0 if ran else None


def images_of(version: Path, split: str) -> Path:
    """The folder of one split's micrographs in a version (genem denoise writes them one level down)."""
    nested = [p for p in (version / split).iterdir() if p.is_dir()]
    return nested[0] if nested else version / split


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=800, help="picker training steps (picking_10028 --quick's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dog-factors", default=",".join(map(str, DOG_FACTORS)),
                   help="DoG diameter scales to choose from on train+valid (comma-separated)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "micrographs" / "cryoppp_10028")
    a = p.parse_args(argv)
    if not (a.data / "test" / "images").is_dir():
        print(f"genem: error: {a.data}: no CryoPPP EMPIAR-10028 folders (train/valid/test)", file=sys.stderr)
        return 2
    out, work = a.out, a.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    run, started = Runner(out, a.threads), time.time()
    geo = measure_labels([a.data / "train", a.data / "valid"])

    log("writing the renders as MRC")
    write_raw(a.data, out / "raw")
    versions, skipped, seconds = {"raw": out / "raw"}, {}, {}  # seconds: only what this run denoised
    log("GenEM denoising")
    t0 = time.time()  # micrograph seconds: 10 renders, with the model load and process start of 3 commands
    denoise_genem(run, out / "raw", out / "genem")
    versions["genem"] = out / "genem"
    if "genem denoise" in run.times:
        seconds["genem"] = time.time() - t0
    try:
        log("Topaz denoising")
        topaz_seconds = denoise_topaz(out / "raw", out / "topaz", a.threads)
        versions["topaz"] = out / "topaz"
        if topaz_seconds is not None:
            seconds["topaz"] = topaz_seconds
    except ImportError as e:
        skipped["topaz"] = f"topaz-em not importable: {e}"

    labels = {s: a.data / s / "labels" for s in SPLITS}
    results = {}
    for name, version in versions.items():
        f, dog_valid = choose_dog_factor(run, geo["diameter_A"], {s: (images_of(version, s), labels[s])
                                                                   for s in ("train", "valid")}, work, f"{name}_",
                                         tuple(map(float, a.dog_factors.split(","))))
        rows = {"dog": [evaluate(run, pick(run, dog_args(f, geo["diameter_A"]), images_of(version, "test"),
                                         out / name / "dog"), labels["test"],
                                 work / f"eval_test_{name}_dog.json")], "real": []}
        real_args = ["--real-labels", labels["train"], "--real-micrographs", images_of(version, "train"),
                     "--real-pixel-size-A", REAL_PX_A]
        for s in range(a.seeds):
            m = train(run, work / f"model_{name}_real_seed{s}", real_args, geo, a.steps, s)
            folder = out / name / ("real" if s == 0 else f"real_seed{s}")
            rows["real"].append(evaluate(run, pick(run, ["--model", m], images_of(version, "test"), folder),
                                         labels["test"], work / f"eval_test_{name}_real_seed{s}.json"))
        results[name] = {"dog_factor": f, "dog_train_valid_auprc": dog_valid,
                         **{picker: summarise(r) for picker, r in rows.items()}}
        log(f"{name}: dog {results[name]['dog']['auprc']}, real {results[name]['real']['auprc']}")

    timing = out / "denoise_seconds.json"  # a re-run skips finished denoising, keeps the seconds of the run that did it
    seconds = {**(json.loads(timing.read_text()) if timing.is_file() else {}), **seconds}
    timing.write_text(json.dumps(seconds))
    report = {"seeds": a.seeds, "steps": a.steps, "labels": geo, "denoise_seconds": seconds, "skipped": skipped,
              "results": results, "minutes": (time.time() - started) / 60, "times_s": run.times}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    figure(out / "picking_denoised.png", versions, labels["test"], geo)
    lines = ["| micrographs | DoG test AUPRC (scale) | DoG best F1 | DoG highest recall | picker on the 4 labelled train "
             "micrographs: test AUPRC | best F1 | highest recall |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['dog']['auprc'][0]:.3f} ({r['dog_factor']} x) | {r['dog']['f1'][0]:.3f} | {r['dog']['max_recall'][0]:.3f} | "
                     f"{fmt(r['real']['auprc'])} | {fmt(r['real']['f1'])} | {fmt(r['real']['max_recall'])} |")
    lines += [f"\n{a.seeds} seed(s), {a.steps} steps; denoising seconds {seconds}; skipped {skipped}; "
              f"{report['minutes']:.1f} min (this run)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def figure(path: Path, versions: dict, labels: Path, geo: dict, crop: int = 400) -> None:
    """The same corner of the first test micrograph in every version, labelled particles circled in green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genem.pick.data import centres_from_mask, read_mask

    stem = sorted(images_of(versions["raw"], "test").glob("*.mrc"))[0].stem
    centres = centres_from_mask(read_mask(labels / f"{stem}.png"), geo["diameter_px"])
    fig, axes = plt.subplots(1, len(versions), figsize=(4 * len(versions), 4.2))
    for ax, (name, version) in zip(np.atleast_1d(axes), versions.items()):
        img = read_image(images_of(version, "test") / f"{stem}.mrc")[0][:crop, :crop]
        lo, hi = np.percentile(img, [1, 99])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        for x, y in centres:
            if x < crop and y < crop:
                ax.add_patch(plt.Circle((x, y), geo["diameter_px"] / 2, fill=False, color="lime", lw=0.6))
        ax.set_title(f"{name} ({stem}, {crop}^2 px corner)", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise(reports: list) -> dict:
    """(mean, sd or None) of AUPRC, best F1 and highest recall over the seeds' evaluation reports."""
    vals = {"auprc": [r["auprc"] for r in reports], "f1": [r["f1"] for r in reports],
            "max_recall": [max(r["curve"]["recall"], default=0.0) for r in reports]}
    return {k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else None) for k, v in vals.items()}


def fmt(mean_sd) -> str:
    m, sd = mean_sd
    return f"{m:.3f}" if sd is None else f"{m:.3f} +- {sd:.3f}"


if __name__ == "__main__":
    sys.exit(main())
