# FPN + ImageNet EfficientNet-Lite0 on CamVid, 400 steps (configs/fpn_camvid.py with its
# 400-step cross-entropy-only recipe):
# train, select on the validation frames, then score the test frames once at 360x480.
# Feeds experiments/README.md, CamVid table, row "FPN + Lite0 (ImageNet), 400 steps".
# Run from the repository root: bash experiments/camvid_fpn_pretrained_400/run.sh
set -euo pipefail
OUT=experiments/camvid_fpn_pretrained_400
RUN=runs/fpn_camvid_400
date -u +"start %FT%TZ"
source experiments/machine_info.sh
python -m segjax.main --config configs/fpn_camvid.py:../shared/data/camvid --workdir $RUN \
  --config.num_train_steps=400 --config.loss_weights.dice=0
date -u +"trained %FT%TZ"; uptime
python -m segjax.evaluate --workdir $RUN --step best --split test --output $OUT/eval_test.json
date -u +"end %FT%TZ"; uptime
cp $RUN/metrics.jsonl $RUN/config.json $OUT/
