#!/usr/bin/env bash
# Rebuild GenEM's default denoiser (genem/restore/default_model) and its evaluation from scratch, on CPU.
# Usage: benchmarks/denoise_default_model.sh WORK_DIR [SHARED_DATA]   (about 40 min on one free core)
set -euo pipefail
W=${1:?work dir}; S=${2:-../shared/data}
mkdir -p "$W/data"
# three random compact "molecules" (Gaussian blobs) as extra training structures besides two PDB models
python - "$W/data" <<'PY'
import sys
from genem.io import write_mrc
from genem.restore.synthetic import blob_volume
for s in (11, 12, 13):
    write_mrc(f"{sys.argv[1]}/blob{s}.mrc", 5 * blob_volume(64, n_blobs=14, radius_frac=0.22, seed=s), 3.54)
PY
C="--pixel-size-A 3.54 --box 64 --voltage-kV 200 --defocus-A 8000,35000 --no-progress"
python -m genem simulate --out "$W/data/train_snr" --structure "$S/models/6z6u.pdb" --structure "$S/models/8zpm.cif" \
  --structure "$W/data/blob11.mrc" --structure "$W/data/blob12.mrc" --structure "$W/data/blob13.mrc" $C \
  --n-micrographs 40 --micrograph-size 2048 --particles 120 --noise-mode snr --snr 0.02,0.3 --seed 101
# held out: a structure never seen in training (70S ribosome map), SNR 0.05 (Gaussian) and low-dose Poisson
R="--structure $S/maps/aspire/clean70SRibosome_vol_65p.mrc --map-pixel-size-A 3.0"
python -m genem simulate --out "$W/data/heldout_snr005" $R $C --n-micrographs 8 --micrograph-size 1024 \
  --particles 40 --noise-mode snr --snr 0.05 --seed 900
python -m genem simulate --out "$W/data/heldout_poisson" $R $C --n-micrographs 6 --micrograph-size 1024 \
  --particles 40 --noise-mode poisson --dose 0.03 --seed 901
python -m genem simulate --out "$W/data/heldout_snr02" $R $C --n-micrographs 5 --micrograph-size 1024 \
  --particles 40 --noise-mode snr --snr 0.2 --seed 902
# the model (run as two stages here; one call with --post-steps 3000 is equivalent)
python -m genem denoise train --data "$W/data/train_snr" --out "$W/model" --steps 2000 --post-steps 3000 \
  --batch-size 16 --crop 40 --channels 16 --post-channels 16 --sample-steps 10 --seed 0 --threads 1
# evaluation
for d in heldout_snr005 heldout_poisson heldout_snr02; do
  python -m genem evaluate denoise --model "$W/model" --data "$W/data/$d" --out "$W/eval_$d" --max-particles 256 \
    --mean-of 4 --threads 1
done
python -m genem evaluate denoise --model "$W/model" --data "$W/data/heldout_snr005" --out "$W/eval_steps" \
  --max-particles 96 --no-topaz --compare-steps 200 --threads 1
GENEM_SHARED_DATA="$S" python benchmarks/denoise_real.py --model "$W/model" --n 400 --out "$W/real"
python benchmarks/denoise.py --data "$W/data/heldout_snr005" --model "$W/model" --n 64 --threads 1 --out "$W/bench.json"
