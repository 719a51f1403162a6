#!/bin/bash
# Scale robustness of SFA skin runs: the 111 validation faces at 1/2 and 1/4 of their
# size on non-skin canvases of the original size (make_set.py, seed 0).
#   experiments/skin_sfa_scales/run.sh NAME=RUN [NAME=RUN ...]
# e.g. keep_ratio=runs/sfa_keep squash96=runs/sfa_squash96 wide_scale=runs/sfa_wide_scale;
# writes experiments/skin_sfa_scales/NAME_{half,quarter}.json and .log (DATA_DIR: the
# TFDS data dir, SETS: where the sets are written, SFA: the skin_sfa folder).
set -e
here=$(dirname "$0")
data_dir=${DATA_DIR:-~/tensorflow_datasets}
sets=${SETS:-/tmp/skin_sfa_scales}
python "$here/make_set.py" --sfa "${SFA:-/work/shared/data/skin_sfa}" --output "$sets" --seed 0
for pair in "$@"; do
  name=${pair%%=*}; run=${pair#*=}
  for scale in half quarter; do
    command=(python -m segjax.evaluate --workdir "$run" --config.dataset.source_dir="$sets/$scale"
             --config.dataset.split_file= --config.dataset.data_dir="$data_dir"
             --output "$here/${name}_${scale}.json")
    { echo "command: ${command[*]}"; echo "start: $(date -u)"
      "${command[@]}" 2>&1 | grep -v "^W[0-9]\{4\} "; echo "end: $(date -u)"; } \
      > "$here/${name}_${scale}.log"
    tail -2 "$here/${name}_${scale}.log" | head -1 | cut -c1-200
  done
done
