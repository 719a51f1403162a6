# U-Net + ImageNet EfficientNet-Lite0 on SFA skin, 600 steps (configs/unet_skin.py as it is),
# scored once, at the last step, on the 111 val photos at their original size.
# Feeds experiments/README.md, SFA table, row "U-Net + Lite0 (ImageNet)".
# Run from the repository root: bash experiments/skin_sfa_unet_pretrained/run.sh
set -euo pipefail
OUT=experiments/skin_sfa_unet_pretrained
RUN=runs/skin_sfa_unet_pretrained
date -u +"start %FT%TZ"
source experiments/machine_info.sh
python -m segjax.main --config configs/unet_skin.py:../shared/data/skin_sfa --workdir $RUN
date -u +"end %FT%TZ"; uptime
cp $RUN/metrics.jsonl $RUN/config.json $OUT/
