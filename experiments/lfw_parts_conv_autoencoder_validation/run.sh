# The LFW autoencoder row, selected on validation: configs/conv_autoencoder_lfw.py as it is
# (6000 steps, evaluated on the validation faces, the best checkpoint kept), then the test
# faces scored once with that checkpoint.
# Feeds experiments/README.md, row "conv_autoencoder_lfw.py, selected on validation".
# Run from the repository root: bash experiments/lfw_parts_conv_autoencoder_validation/run.sh
set -euo pipefail
OUT=experiments/lfw_parts_conv_autoencoder_validation
RUN=runs/lfw_conv_autoencoder_validation
date -u +"start %FT%TZ"
source experiments/machine_info.sh
python -m segjax.main --config configs/conv_autoencoder_lfw.py:../shared/data/lfw_parts_128 --workdir $RUN
date -u +"trained %FT%TZ"; uptime
python -m segjax.evaluate --workdir $RUN --step best --split test --output $OUT/eval_test.json
date -u +"end %FT%TZ"; uptime
cp $RUN/metrics.jsonl $RUN/config.json $OUT/
