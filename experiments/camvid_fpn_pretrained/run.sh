# FPN + ImageNet EfficientNet-Lite0 on CamVid: train, then score the test frames once.
# Run from the repository root: bash experiments/camvid_fpn_pretrained/run.sh
set -euo pipefail
OUT=experiments/camvid_fpn_pretrained
date -u +"start %FT%TZ"
source experiments/machine_info.sh
python -m segjax.main --config configs/fpn_camvid.py:../shared/data/camvid --workdir runs/fpn_camvid_camvid
date -u +"trained %FT%TZ"; uptime
python -m segjax.evaluate --workdir runs/fpn_camvid_camvid --step best --split test --output $OUT/eval_test.json
date -u +"end %FT%TZ"; uptime
cp runs/fpn_camvid_camvid/metrics.jsonl runs/fpn_camvid_camvid/config.json $OUT/
