#!/bin/bash
# Scale robustness of two SFA skin runs: the 111 validation faces at 1/2 and 1/4 of
# their size on non-skin canvases of the original size (make_set.py, seed 0).
#   experiments/skin_sfa_scales/run.sh KEEP_RATIO_RUN SQUASH_RUN [DATA_DIR]
# writes experiments/skin_sfa_scales/{keep_ratio,squash96}_{half,quarter}.json and .log.
set -e
here=$(dirname "$0")
keep=$1; squash=$2; data_dir=${3:-~/tensorflow_datasets}
sets=${SETS:-/tmp/skin_sfa_scales}
python "$here/make_set.py" --sfa "${SFA:-/work/shared/data/skin_sfa}" --output "$sets" --seed 0
for run in "keep_ratio $keep" "squash96 $squash"; do
  set -- $run
  for scale in half quarter; do
    python -m segjax.evaluate --workdir "$2" --config.dataset.source_dir="$sets/$scale" \
        --config.dataset.split_file= --config.dataset.data_dir="$data_dir" \
        --output "$here/${1}_${scale}.json" > "$here/${1}_${scale}.log" 2>&1
    tail -1 "$here/${1}_${scale}.log" | cut -c1-200
  done
done
