# FPN + ImageNet EfficientNet-Lite0 on CamVid, 800 steps, cross-entropy + Dice
# (configs/fpn_camvid.py as it is): train and keep the best validation checkpoint;
# score it on the validation frames without and with flip averaging, keep the better
# inference, then score the test frames once with it, at 360x480.
# Feeds experiments/README.md, CamVid table, row "FPN + Lite0 (ImageNet), 800 steps, CE + Dice".
# Run from the repository root: bash experiments/camvid_fpn_pretrained_800/run.sh
set -euo pipefail
OUT=experiments/camvid_fpn_pretrained_800
RUN=runs/fpn_camvid_800
date -u +"start %FT%TZ"
source experiments/machine_info.sh
python -m segjax.main --config configs/fpn_camvid.py:../shared/data/camvid --workdir $RUN
date -u +"trained %FT%TZ"; uptime
python -m segjax.evaluate --workdir $RUN --step best --split validation --output $OUT/eval_validation.json | tail -1
python -m segjax.evaluate --workdir $RUN --step best --split validation --flip --output $OUT/eval_validation_flip.json | tail -1
FLIP=$(python -c "import json, sys; plain, flip = (json.load(open(f))['mean_iou'] for f in sys.argv[1:]); print('--flip' if flip > plain else '')" \
  $OUT/eval_validation.json $OUT/eval_validation_flip.json)
echo "chosen on validation: ${FLIP:-no flip}"
date -u +"selected %FT%TZ"
python -m segjax.evaluate --workdir $RUN --step best --split test $FLIP --output $OUT/eval_test.json
date -u +"end %FT%TZ"; uptime
cp $RUN/metrics.jsonl $RUN/config.json $OUT/
