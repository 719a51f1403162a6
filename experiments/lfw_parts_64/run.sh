#!/bin/bash
# Regenerates the five runs of experiments/lfw_parts_64/README.md, one after the other
# (from the repository root; DATA: the lfw_parts_128 folder). Each run's folder gets its
# console log, metrics, config, prediction grid and curve (experiments/collect_run.py).
set -e
cd "$(dirname "$0")/../.."
D=${DATA:-../shared/data/lfw_parts_128}
L="--config.dataset.name=lfw_parts --config.dataset.source_dir=$D --config.dataset.target=face --config.dataset.eval_split=test"
run() {
  name=$1; shift
  rm -rf "runs/lfw64_$name"
  { echo "\$ python -m segjax.main $* --workdir runs/lfw64_$name"; date -u; uptime
    python -m segjax.main "$@" --workdir "runs/lfw64_$name" 2>&1 | grep --line-buffered -v "^W[0-9]\{4\} "
    date -u; } > "/tmp/lfw64_$name.log"
  python experiments/collect_run.py "runs/lfw64_$name" "experiments/lfw_parts_64/$name" \
    --log "/tmp/lfw64_$name.log"
}
run cae_gray --config configs/conv_autoencoder_lfw.py:$D --config.dataset.image_size=64 \
  --config.batch_size=8 --config.num_train_steps=600 --config.eval_every_steps=300
run segnet_rgb --config configs/segnet_skin.py $L --config.model.width_multiplier=1.0 \
  --config.num_train_steps=600 --config.eval_every_steps=300
run segnet_gray --config configs/segnet_skin.py $L --config.model.width_multiplier=1.0 \
  --config.dataset.grayscale=True --config.num_train_steps=600 --config.eval_every_steps=300
run unet_rgb --config configs/unet.py $L --config.num_train_steps=300 --config.eval_every_steps=150
run unet_gray --config configs/unet.py $L --config.dataset.grayscale=True \
  --config.num_train_steps=300 --config.eval_every_steps=150
