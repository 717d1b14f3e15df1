#!/usr/bin/env bash
# Rebuild GenEM's default denoiser (genem/restore/default_model) and its evaluation from scratch, on CPU.
# Usage: benchmarks/denoise_default_model.sh WORK_DIR [SHARED_DATA]   (about 3 h on the 2-core CPU machine)
# Two stages: v1 is trained from scratch on data that all have ice (Gaussian and Poisson, SNR up to 0.3); the
# shipped model (v2) is v1 fine-tuned on those data plus ice-free and higher-dose simulations of the same 13
# structures (v1 returned faint, over-smoothed particles whenever the noise was mostly shot noise).
set -euo pipefail
W=${1:?work dir}; S=${2:-../shared/data}
mkdir -p "$W/data"
# ten random compact "molecules" (Gaussian blobs, 50-190 A across) beside three atomic models as training structures
python - "$W/data" <<'PY'
import sys
import numpy as np
from genem.io import write_mrc
from genem.restore.synthetic import blob_volume
rng = np.random.default_rng(7)
for s in range(10):
    nb, rf, px = int(rng.integers(8, 40)), float(rng.uniform(0.15, 0.3)), float(rng.uniform(2.5, 5.5))
    write_mrc(f"{sys.argv[1]}/blob{s}.mrc", 5 * blob_volume(64, n_blobs=nb, radius_frac=rf, seed=100 + s), px)
PY
ST="--structure $S/models/6z6u.pdb --structure $S/models/8zpm.cif --structure genem/data/default_structure.pdb"
for s in 0 1 2 3 4 5 6 7 8 9; do ST="$ST --structure $W/data/blob$s.mrc"; done
C="--pixel-size-A 3.54 --box 64 --voltage-kV 200 --defocus-A 8000,35000 --progress none --micrograph-size 2048 --particles 120"
python -m genem simulate --out "$W/data/train_snr" $ST $C --n-micrographs 40 --noise-mode snr --snr 0.02,0.3 --seed 202
python -m genem simulate --out "$W/data/train_poisson_lo" $ST $C --n-micrographs 60 --noise-mode poisson --dose 0.5,4 --seed 201
python -m genem simulate --out "$W/data/train_poisson_hi" $ST $C --n-micrographs 30 --noise-mode poisson --dose 4,15 --seed 203
# held out: a structure never seen in training (70S ribosome map): Poisson at SNR ~0.05 (dose 2.2 e/A^2, see
# rlnGenemSnr in micrographs.star), Gaussian SNR 0.05 and 0.2
R="--structure $S/maps/aspire/clean70SRibosome_vol_65p.mrc --map-pixel-size-A 3.0"
C2="--pixel-size-A 3.54 --box 64 --voltage-kV 200 --defocus-A 8000,35000 --progress none --micrograph-size 1024 --particles 40"
python -m genem simulate --out "$W/data/heldout_poisson" $R $C2 --n-micrographs 8 --noise-mode poisson --dose 2.2 --seed 901
python -m genem simulate --out "$W/data/heldout_snr005" $R $C2 --n-micrographs 8 --noise-mode snr --snr 0.05 --seed 900
python -m genem simulate --out "$W/data/heldout_snr02" $R $C2 --n-micrographs 5 --noise-mode snr --snr 0.2 --seed 902
python -m genem denoise train --data "$W/data/train_snr" "$W/data/train_poisson_lo" "$W/data/train_poisson_hi" \
  --out "$W/model_v1" --steps 3000 --post-steps 4000 --post-train-images 6000 --batch-size 16 --crop 48 \
  --channels 32 --post-channels 32 --channel-mults 1,2,2,4 --sample-steps 10 --seed 0 --threads 1
# stage 2 (the shipped model): the same structures without ice (Poisson 2-60 e/A^2, Gaussian SNR 0.1-3) and with
# ice at 15-60 e/A^2; v1 fine-tuned on all six sets (4,000 particles at most from each)
python -m genem simulate --out "$W/data/train_noice_poisson" $ST $C --n-micrographs 30 --ice none --noise-mode poisson --dose 2,60 --seed 204
python -m genem simulate --out "$W/data/train_noice_snr" $ST $C --n-micrographs 30 --ice none --noise-mode snr --snr 0.1,3 --seed 205
python -m genem simulate --out "$W/data/train_ice_poisson_hi" $ST $C --n-micrographs 20 --noise-mode poisson --dose 15,60 --seed 206
python -m genem denoise train --init "$W/model_v1" --data "$W/data/train_snr" "$W/data/train_poisson_lo" \
  "$W/data/train_poisson_hi" "$W/data/train_noice_poisson" "$W/data/train_noice_snr" "$W/data/train_ice_poisson_hi" \
  --out "$W/model" --steps 1200 --post-steps 1200 --lr 3e-4 --post-train-images 3000 --max-particles 24000 \
  --batch-size 16 --crop 48 --seed 0 --threads 2
# the default route (issue 17): 1 DDIM step + the post-processor instead of the 10 steps it was trained after
python - "$W/model" <<'PY'
import sys
from genem.restore.model import Denoiser
m = Denoiser.load(sys.argv[1])
m.default_steps = 1
m.save(sys.argv[1])
PY
for d in heldout_poisson heldout_snr005 heldout_snr02; do
  python -m genem evaluate denoise --model "$W/model" --data "$W/data/$d" --out "$W/eval_$d" --max-particles 256 \
    --mean-of 8 --dihedral --threads 1
done
python -m genem evaluate denoise --model "$W/model" --data "$W/data/heldout_poisson" --out "$W/eval_steps" \
  --max-particles 32 --no-topaz --compare-steps 200 --threads 1
for m in model model_v1; do
  GENEM_SHARED_DATA="$S" python benchmarks/denoise_real.py --model "$W/$m" --n 400 --out "$W/real_$m"
done
python benchmarks/denoise.py --data "$W/data/heldout_poisson" --model "$W/model" --n 64 --threads 1 --out "$W/bench.json"
