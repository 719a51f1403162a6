#!/usr/bin/env bash
# The train-step measurements of experiments/performance.md's summary, one log each.
# Run from the repository root:
#   bash experiments/benchmarks/run.sh [python] [log suffix] [name regex, e.g. segnet]
# SEGJAX_HOST_MEMORY=release times both frameworks with glibc's malloc defaults.
set -euo pipefail
python=${1:-python}
suffix=${2:-}
only=${3:-.}
out=experiments/benchmarks
run() {
  local name=$1; shift
  [[ $name =~ $only ]] || return 0
  {
    echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD); load average $(cut -d' ' -f1-3 /proc/loadavg); SEGJAX_HOST_MEMORY=${SEGJAX_HOST_MEMORY:-retain}"
    echo "# $python -m segjax.benchmark $*"
    "$python" -m segjax.benchmark "$@" 2>&1
  } | tee "$out/$name$suffix.log"
}
run segnet_b8_128 --config configs/segnet_skin.py --config.model.width_multiplier=1.0 \
    --config.dataset.image_size=128 \
    --config.batch_size=8 --steps 15 --warmup 3 --compare torch
run segnet_b4_256 --config configs/segnet_skin.py --config.model.width_multiplier=1.0 \
    --config.dataset.image_size=256 \
    --config.batch_size=4 --steps 10 --warmup 2 --compare torch
run unet_b4_128 --config configs/unet.py --num_classes 4 --config.dataset.image_size=128 \
    --config.batch_size=4 --steps 10 --warmup 2 --compare torch
