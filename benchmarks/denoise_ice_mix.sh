#!/usr/bin/env bash
# Does training data without ice cure the failure of a model trained only with ice (v1, the previous default)
# on particles without ice? Fine-tunes START_MODEL on simulations of three structures other than the held-out
# ribosome (apoferritin 6Z6U, CXCR4 8ZPM, GenEM's toy assembly), half with ice and half without, Poisson 2-60
# e/A^2, and evaluates it on the held-out sets of benchmarks/denoise_snr_sweep.py (run that first with the same
# WORK_DIR, or let this build them).
# Usage: benchmarks/denoise_ice_mix.sh WORK_DIR [SHARED_DATA] [START_MODEL]   (about 35 min on the 2-core CPU
# machine). The numbers in docs/denoise.md started from v1, the previous default (benchmarks/denoise_default_model.sh
# writes it as WORK_DIR/model_v1); START_MODEL defaults to the shipped model (v2), which already saw such data.
set -euo pipefail
W=${1:?work dir}; S=${2:-../shared/data}; START=${3:-default}
mkdir -p "$W"
C="--pixel-size-A 3.54 --box 64 --voltage-kV 200 --defocus-A 8000,35000 --progress none --micrograph-size 2048
   --particles 120 --n-micrographs 12 --structure $S/models/6z6u.pdb --structure $S/models/8zpm.cif
   --structure genem/data/default_structure.pdb --noise-mode poisson --dose 2,60"
python -m genem simulate --out "$W/mix_noice" $C --ice none --seed 7001
python -m genem simulate --out "$W/mix_ice" $C --seed 7002
python -m genem denoise train --init "$START" --data "$W/mix_noice" "$W/mix_ice" --out "$W/ft_mix" --steps 600 \
  --post-steps 400 --lr 3e-4 --post-train-images 1500 --threads 2 --progress none
python benchmarks/denoise_snr_sweep.py "$W" "$S" --model "$W/ft_mix"
