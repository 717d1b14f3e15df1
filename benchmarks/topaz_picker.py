"""Topaz's particle picker (Bepler et al. 2019, pip ``topaz-em``) as the external second opinion of the picking
benchmark (issue 16, arm g): trained on the same translated synthetic micrographs as the translated arm, scored on
the same real test micrographs.

Topaz runs through its own command line in its own environment, as scipion-em-topaz runs it: ``--topaz PATH``
names its ``topaz`` executable (a venv where torch and torchvision match; topaz-em's trainer imports torchvision,
and no torchvision built for the torch this project pins installs beside it offline).

Scale: ``topaz preprocess`` downsamples by an integer factor (Fourier cropping, GMM normalisation). The synthetic
micrographs (10.72 A/px) are downsampled 2x and the real renders (5.36 A/px) 4x, both to 21.44 A/px (the ribosome
~14 px across, well inside resnet8's 71 px receptive field); training coordinates are divided by 2 and the picks
multiplied by 4 (Fourier cropping keeps the origin: pixel j of the small image sits at j x k of the large one).
``topaz preprocess`` cannot read PNG (topaz-em 0.3.20: "'PngImageFile' object has no attribute 'astype'"), so the
renders are first written as float32 MRC, same pixels.

Training: Topaz's defaults (resnet8, 32 units, GE-binomial, radius 3, positive fraction 1/16 per minibatch) except
what the data decide: the expected particles per micrograph (``-n``, the labelled mean measured on train+valid),
CPU, no pretrained initialisation (Topaz's shipped weights were trained on real EMPIAR data; this arm sees only the
arm-(d) data), and the budget: as many parameter updates as the GenEM picker's training steps (4 epochs) with 64
regions per update instead of 256. One Topaz region is a 71^2 receptive field, so 256 of them are ~40x the input
of a GenEM step (8 patches of 64^2): at 256, 800 updates took ~12 s each on the loaded 2 cores (~3 h); at 64 the
input per update is still ~10x GenEM's. The last epoch's model is used (nothing is chosen on the test split).
Topaz takes no seed: a seed changes the simulated data only.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from genem.io import GenemDataset, write_mrc, write_star
from genem.io.images import read_image
from genem.pick import read_coordinates_star

TOPAZ_PX_A = 21.44
EPOCHS = 4
MINIBATCH = 64


def find_topaz(path: str | None) -> tuple[str | None, str | None]:
    """``(topaz executable, None)``, or ``(None, why not)`` when there is none that runs."""
    exe = path or shutil.which("topaz")
    if not exe:
        return None, ("no `topaz` executable: install topaz-em in its own environment (torch and torchvision "
                      "that match) and give --topaz PATH")
    try:
        r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=300)
    except OSError as e:
        return None, f"{exe}: {e}"
    if r.returncode:
        last = (r.stderr.strip().splitlines() or ["no message"])[-1]
        return None, f"`{exe} --version` failed: {last}"
    return exe, None


def factor(pixel_size_A: float) -> int:
    k = TOPAZ_PX_A / pixel_size_A
    if abs(k - round(k)) > 1e-3:
        raise ValueError(f"{pixel_size_A} A/px does not downsample to {TOPAZ_PX_A} A/px by an integer factor")
    return int(round(k))


def write_targets(dataset: Path, path: Path, k: int) -> int:
    """Topaz's coordinate table (image_name, x_coord, y_coord at 1/k scale) from a GenEM dataset's coordinate STARs;
    returns the number of particles."""
    ds = GenemDataset.open(dataset)
    rows = []
    for name in ds.micrographs()["rlnMicrographName"]:
        stem = Path(str(name)).stem
        for x, y in read_coordinates_star(ds.coordinates_path(name))[0]:
            rows.append((stem, int(round(x / k)), int(round(y / k))))
    pd.DataFrame(rows, columns=["image_name", "x_coord", "y_coord"]).to_csv(path, sep="\t", index=False)
    return len(rows)


def write_picks(table: Path, out_dir: Path, k: int, stems) -> None:
    """Topaz's extracted picks (image_name, x_coord, y_coord, score at 1/k scale) -> one RELION coordinate STAR per
    micrograph in ``out_dir`` (input-micrograph pixels, score as rlnAutopickFigureOfMerit)."""
    picks = pd.read_csv(table, sep="\t")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        g = picks[picks["image_name"].astype(str) == stem]
        write_star(out_dir / f"{stem}.star", {"": pd.DataFrame({
            "rlnCoordinateX": g["x_coord"].to_numpy(np.float64) * k,
            "rlnCoordinateY": g["y_coord"].to_numpy(np.float64) * k,
            "rlnAutopickFigureOfMerit": g["score"].to_numpy(np.float64)})})


def run_topaz_arm(run, topaz: str, dataset: Path, test_images: Path, work: Path, picks_out: Path, *,
                  test_pixel_size_A: float, particles_per_micrograph: float, diameter_A: float, steps: int,
                  threads: int) -> Path:
    """Train Topaz on ``dataset`` (a translated GenEM dataset) and pick ``test_images`` into ``picks_out/picks``.
    Every step goes through ``run.command`` (recorded, skipped when already made by the same command)."""
    work.mkdir(parents=True, exist_ok=True)
    ds = GenemDataset.open(dataset)
    k_sim, k_real = factor(ds.pixel_size_A), factor(test_pixel_size_A)
    images = sorted(test_images.glob("*.png"))
    cpu = ["-d", "-1", "-j", str(threads)]
    train_dir = work / "train_images"
    test_mrc, test_dir = work.parent / "topaz_test_mrc", work.parent / "topaz_test_images"
    test_mrc.mkdir(exist_ok=True)
    for p in images:
        write_mrc(test_mrc / f"{p.stem}.mrc", read_image(p)[0].astype(np.float32), test_pixel_size_A)
    run.command([topaz, "preprocess", "-s", k_sim, *cpu, "-o", train_dir,
                 *(ds.micrograph_path(n) for n in ds.micrographs()["rlnMicrographName"])], done=train_dir,
                tag="topaz preprocess")
    run.command([topaz, "preprocess", "-s", k_real, *cpu, "-o", test_dir,
                 *(test_mrc / f"{p.stem}.mrc" for p in images)], done=test_dir, tag="topaz preprocess")
    targets = work / "train_targets.txt"
    write_targets(dataset, targets, k_sim)
    prefix, model = work / "model", work / f"model_epoch{EPOCHS}.sav"
    run.command([topaz, "train", "--train-images", train_dir, "--train-targets", targets,
                 "-n", f"{particles_per_micrograph:.0f}", "--no-pretrained", "--num-epochs", EPOCHS,
                 "--epoch-size", max(1, steps // EPOCHS), "--minibatch-size", MINIBATCH, "--num-workers", 0, *cpu,
                 "--save-prefix", prefix, "-o", work / "train_curve.txt"], done=model, tag="topaz train")
    table = work / "test_picks.txt"
    radius_px = max(1, int(round(diameter_A / 2 / TOPAZ_PX_A)))
    run.command([topaz, "extract", "-m", model, "-r", radius_px, *cpu, "-o", table,
                 *sorted(test_dir.glob("*.mrc"))], done=table, tag="topaz extract")
    write_picks(table, picks_out / "picks", k_real, [p.stem for p in images])
    return picks_out

