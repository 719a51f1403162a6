#!/bin/bash
# Regenerates the logs of experiments/inference_benchmark.md (from the repository root,
# with the segjax[onnx,torch] extras installed).
set -e
cd "$(dirname "$0")/../.."
run() {
  name=$1; shift
  { echo "command: nice -n 10 python -m segjax.export.benchmark $*"; date -u; uptime; nproc
    nice -n 10 python -m segjax.export.benchmark "$@" 2>&1 | grep --line-buffered -v "^W[0-9]\{4\} "
  } > "experiments/inference_benchmark/$name.log"
}
case "${1:-all}" in
  segnet_256|all) run segnet_256 --config configs/segnet_skin.py --config.dataset.image_size=256 \
    --rounds 5 --torch ;;&
  unet_256|all) run unet_256 --config configs/unet.py --config.dataset.image_size=256 \
    --rounds 3 --torch ;;&
  segnet_skin_64|all) run segnet_skin_64 --config configs/segnet_skin.py --rounds 10 --torch ;;
esac
