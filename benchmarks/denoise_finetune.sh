#!/usr/bin/env bash
# Whole-box SNR 0.05 evaluation of the shipped denoiser, and fine-tuning it on simulations of the specimen itself.
# Usage: benchmarks/denoise_finetune.sh WORK_DIR [SHARED_DATA] [START_MODEL]
# START_MODEL: the model that is fine-tuned (default: the shipped one, v2; most numbers in docs/denoise.md were
# measured from v1, the previous default, which benchmarks/denoise_default_model.sh writes as WORK_DIR/model_v1)
# (48 min on the 2-core CPU machine without the one-command run, about 70 min with it; gives the numbers in
# docs/denoise.md: a full rerun of all but the one-command run reproduced them bit for bit)
#
# The held-out structure is the 70S ribosome map. "SNR 0.05" is taken over the whole box (signal variance of the
# clean particle images over the noise variance, as cryoDRGN's add_noise without a mask): the dose / --snr below
# give 0.046 / 0.048, which `genem evaluate denoise` measures and writes as snr_whole_box. (A simulation's
# rlnGenemSnr is the SNR inside the particle masks: 3x higher for these particles.)
set -euo pipefail
W=${1:?work dir}; S=${2:-../shared/data}; START=${3:-default}
START_MODEL=(); if [ "$START" != default ]; then START_MODEL=(--model "$START"); fi
mkdir -p "$W"
R="--structure $S/maps/aspire/clean70SRibosome_vol_65p.mrc --map-pixel-size-A 3.0"
C2="--pixel-size-A 3.54 --box 64 --voltage-kV 200 --defocus-A 8000,35000 --progress none --micrograph-size 1024 --particles 40"
python -m genem simulate --out "$W/heldout_box_poisson" $R $C2 --n-micrographs 8 --noise-mode poisson --dose 11.5 --seed 911
python -m genem simulate --out "$W/heldout_box_snr" $R $C2 --n-micrographs 8 --noise-mode snr --snr 0.245 --seed 910
# the specimen's own simulations (other seeds, other orientations and defoci, Poisson 2-20 e/A^2): what a user
# with a map or model of their specimen (or of a homologue) can make
C="--pixel-size-A 3.54 --box 64 --voltage-kV 200 --defocus-A 8000,35000 --progress none --micrograph-size 2048 --particles 120"
python -m genem simulate --out "$W/ribo_train" $R $C --n-micrographs 30 --noise-mode poisson --dose 2,20 --seed 5001
python -m genem denoise train --init "$START" --data "$W/ribo_train" --out "$W/finetuned" --steps 1000 \
  --post-steps 800 --lr 3e-4 --post-train-images 2000 --threads 2 --progress none
# the same with only a 20 A low-pass of the map (a user's low-resolution initial model of the specimen)
python benchmarks/lowpass_map.py "$S/maps/aspire/clean70SRibosome_vol_65p.mrc" "$W/ribo_lp20A.mrc" 20 3.0
python -m genem simulate --out "$W/lp20_train" --structure "$W/ribo_lp20A.mrc" --map-pixel-size-A 3.0 $C \
  --n-micrographs 30 --noise-mode poisson --dose 2,20 --seed 5001
python -m genem denoise train --init "$START" --data "$W/lp20_train" --out "$W/finetuned_lp20" --steps 1000 \
  --post-steps 800 --lr 3e-4 --post-train-images 2000 --threads 2 --progress none
# the full-map fine-tuning in one command: --structure simulates the specimen as the --like particles were imaged
python -m genem denoise train --init "$START" --structure "$S/maps/aspire/clean70SRibosome_vol_65p.mrc" \
  --map-pixel-size-A 3.0 --like "$W/heldout_box_poisson/particles.star" --out "$W/finetuned_onecmd" --steps 1000 \
  --post-steps 800 --lr 3e-4 --post-train-images 2000 --threads 2 --progress none
for d in heldout_box_poisson heldout_box_snr; do
  python -m genem evaluate denoise "${START_MODEL[@]}" --data "$W/$d" --out "$W/eval_start_$d" --threads 2
  for m in finetuned finetuned_lp20 finetuned_onecmd; do
    python -m genem evaluate denoise --model "$W/$m" --data "$W/$d" --out "$W/eval_${m}_$d" --threads 2
  done
done
