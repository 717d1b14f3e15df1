"""How the gain over the baselines grows with SNR, on the held-out structure (70S ribosome, never in training).

Usage: python benchmarks/denoise_snr_sweep.py WORK_DIR [SHARED_DATA] [--model MODEL_DIR] [--threads N]

Simulates 256-particle held-out sets of the ribosome map (box 64, 3.54 A/px, 200 kV, the geometry of the shipped
model) at several noise levels, Gaussian (--snr, the SNR inside the particle masks) and Poisson (--dose), with
and without ice, runs
`genem evaluate denoise` on each (existing results are reused) and prints one table: whole-box SNR, the trivial
all-zero estimate, the best Gaussian low-pass, Topaz-Denoise, the oracle linear filter that knows each image's
Fourier amplitudes, GenEM diffusion + post, and GenEM's gain over the best baseline.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

# (noise mode, level, seed, ice): with ice, its phase noise and the neighbouring particles in the box cap the
# whole-box SNR near 0.09 however little shot noise there is; without ice the SNR goes higher
SETS = [("snr", "0.245", 910, "random"), ("snr", "0.5", 910, "random"), ("snr", "1.0", 910, "random"),
        ("snr", "2.5", 910, "random"), ("snr", "0.245", 910, "none"), ("snr", "2.5", 910, "none"),
        ("poisson", "11.5", 911, "random"), ("poisson", "25", 911, "random"), ("poisson", "50", 911, "random"),
        ("poisson", "11.5", 911, "none"), ("poisson", "50", 911, "none")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work")
    ap.add_argument("shared", nargs="?", default="../shared/data")
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", default="2")
    a = ap.parse_args()
    work, ribo = Path(a.work), Path(a.shared) / "maps" / "aspire" / "clean70SRibosome_vol_65p.mrc"
    rows = []
    for mode, level, seed, ice in SETS:
        data = work / (f"heldout_{mode}_{level}" + ("_noice" if ice == "none" else ""))
        if not (data / "manifest.json").exists():
            subprocess.run([sys.executable, "-m", "genem", "simulate", "--out", str(data), "--structure", str(ribo),
                            "--map-pixel-size-A", "3.0", "--pixel-size-A", "3.54", "--box", "64", "--voltage-kV",
                            "200", "--defocus-A", "8000,35000", "--micrograph-size", "1024", "--particles", "40",
                            "--n-micrographs", "8", "--noise-mode", mode,
                            "--snr" if mode == "snr" else "--dose", level, "--ice", ice, "--seed", str(seed),
                            "--progress", "none"],
                           check=True)
        ev = work / (f"eval_{data.name}" + (f"_{Path(a.model).name}" if a.model else ""))
        if not (ev / "metrics.json").exists():
            cmd = [sys.executable, "-m", "genem", "evaluate", "denoise", "--data", str(data), "--out", str(ev),
                   "--threads", a.threads]
            subprocess.run(cmd + (["--model", a.model] if a.model else []), check=True)
        m = json.loads((ev / "metrics.json").read_text())
        M = m["methods"]
        best = m["summary"]["best_genem"]
        rows.append((f"{mode} {level}" + (", no ice" if ice == "none" else ""), m["snr_whole_box"],
                     M["zero"]["psnr_dB"], M["gaussian_lowpass_best"]["psnr_dB"],
                     M.get("topaz_unet_L2_best_gain", {}).get("psnr_dB", float("nan")),
                     M["oracle_fourier_amplitudes"]["psnr_dB"], M[best]["psnr_dB"],
                     m["summary"]["gain_over_best_baseline_dB"]))
    print("| set | whole-box SNR | zero | best low-pass | Topaz (best gain) | oracle: amplitudes known | "
          "GenEM | GenEM - best baseline |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r[0].split()[0], r[1])):  # by noise mode, then SNR
        print(f"| {r[0]} | {r[1]:.3f} | " + " | ".join(f"{v:.2f}" for v in r[2:7]) + f" | {r[7]:+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
