#!/bin/bash
# Uniform vs repeat-factor sampling on an unbalanced dataset (triangles in 2.5% of
# the training images). Run from the repository root; DATA defaults to /tmp.
#   bash experiments/repeat_factor_sampling/run.sh
set -e
HERE=experiments/repeat_factor_sampling
DATA=${DATA:-/tmp/rfs_data}  # The generated images; prepared data in $DATA/tfds.
[ -d "$DATA/train" ] || PYTHONPATH=. python $HERE/make_dataset.py "$DATA"
common=(--config configs/unet.py --config.dataset.name=image_folder
  --config.dataset.source_dir="$DATA" --config.dataset.num_classes=4
  "--config.dataset.class_names=('background','disk','square','triangle')"
  --config.dataset.data_dir="$DATA/tfds" --config.model.width_multiplier=0.25
  --config.num_train_steps=800 --config.eval_every_steps=200 --config.log_every_steps=50)
python -m segjax.main "${common[@]}" --workdir runs/rfs_uniform > $HERE/uniform.log 2>&1 &
# The second run starts once the first has prepared the dataset.
until grep -q "^dataset image_folder" $HERE/uniform.log; do sleep 5; done
python -m segjax.main "${common[@]}" --workdir runs/rfs_repeat_factor \
  --config.dataset.sampler=repeat_factor --config.dataset.repeat_threshold=0.5 \
  > $HERE/repeat_factor.log 2>&1 &
wait
for run in uniform repeat_factor; do cp runs/rfs_$run/metrics.jsonl $HERE/metrics_$run.jsonl; done
