# The LFW autoencoder's 1500-step row (flips only, XLA's default kernels: the command of
# experiments/lfw_parts_conv_autoencoder/, which scored its last step on test) again, now
# selected on validation: evaluated on the validation faces every 250 steps, the best
# checkpoint kept, then the test faces scored once with it.
# Feeds experiments/README.md, row "conv_autoencoder_lfw.py, 1500 steps, selected on validation".
# Run from the repository root: bash experiments/lfw_parts_conv_autoencoder_validation/run.sh
set -euo pipefail
OUT=experiments/lfw_parts_conv_autoencoder_validation
RUN=runs/lfw_conv_autoencoder_validation
date -u +"start %FT%TZ"
source experiments/machine_info.sh
python -m segjax.main --config configs/conv_autoencoder_lfw.py:../shared/data/lfw_parts_128 --workdir $RUN \
  --config.num_train_steps=1500 --config.eval_every_steps=250 \
  '--config.dataset.augmentations=("flip",)' --config.cpu_conv_kernels=default
date -u +"trained %FT%TZ"; uptime
python -m segjax.evaluate --workdir $RUN --step best --split test --output $OUT/eval_test.json
date -u +"end %FT%TZ"; uptime
cp $RUN/metrics.jsonl $RUN/config.json $OUT/
