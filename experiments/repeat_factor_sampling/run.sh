#!/bin/bash
# Uniform vs repeat-factor sampling on an unbalanced dataset (triangles in 2.5% of
# the training images), two runs side by side. Run from the repository root:
#   bash experiments/repeat_factor_sampling/run.sh colour   # simple_fcn, classes by hue
#   bash experiments/repeat_factor_sampling/run.sh shapes   # U-Net x0.25, classes by shape
#   STEPS=3000 bash experiments/repeat_factor_sampling/run.sh colour  # -> colour_3000_steps/
# The images go to $DATA (default /tmp/rfs_<variant>), prepared data to $DATA/tfds.
set -e
HERE=experiments/repeat_factor_sampling
VARIANT=$1
DATA=${DATA:-/tmp/rfs_$VARIANT}
case $VARIANT in
  colour) make=(--colour); DEFAULT_STEPS=600; model=(--config configs/simple_fcn_digits.py) ;;
  shapes) make=(); DEFAULT_STEPS=800
          model=(--config configs/unet.py --config.model.width_multiplier=0.25) ;;
  *) echo "usage: $0 colour|shapes"; exit 2 ;;
esac
STEPS=${STEPS:-$DEFAULT_STEPS}
model+=(--config.num_train_steps=$STEPS --config.eval_every_steps=$((STEPS / 4))
        --config.log_every_steps=50)
[ -d "$DATA/train" ] || PYTHONPATH=. python $HERE/make_dataset.py "$DATA" "${make[@]}"
common=("${model[@]}" --config.dataset.name=image_folder --config.dataset.source_dir="$DATA"
  --config.dataset.num_classes=4 "--config.dataset.class_names=('background','disk','square','triangle')"
  --config.dataset.data_dir="$DATA/tfds")
OUT=$HERE/$VARIANT
[ "$STEPS" = "$DEFAULT_STEPS" ] || OUT=$HERE/${VARIANT}_${STEPS}_steps
mkdir -p $OUT
python -m segjax.main "${common[@]}" --workdir runs/rfs_${VARIANT}_${STEPS}_uniform > $OUT/uniform.log 2>&1 &
# The second run starts once the first has prepared the dataset.
until grep -q "^dataset image_folder" $OUT/uniform.log; do sleep 5; done
python -m segjax.main "${common[@]}" --workdir runs/rfs_${VARIANT}_${STEPS}_repeat_factor \
  --config.dataset.sampler=repeat_factor --config.dataset.repeat_threshold=0.5 \
  > $OUT/repeat_factor.log 2>&1 &
wait
for run in uniform repeat_factor; do
  cp runs/rfs_${VARIANT}_${STEPS}_$run/metrics.jsonl $OUT/metrics_$run.jsonl
done
