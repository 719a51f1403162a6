#!/usr/bin/env bash
# The accelerator check. On a GPU or TPU machine, from the repository root:
#
#   experiments/accelerator/check.sh [--dry-run] [--out DIR] [--data_dir DIR]
#
# in an environment with the accelerator's jax (e.g. pip install -U "jax[cuda12]"), segjax's
# test extra (pip install -e ".[test]") and, for the comparison, PyTorch built for the device.
# $PYTHON names the interpreter (default: python).
#
# 1. environment.txt: the devices, versions and the float32/bfloat16 datasheet peaks used.
# 2. tests.log: the tests that mean something on an accelerator (model ops in both forms,
#    models, losses, metrics, optimizer, training); float32 products at full precision there,
#    so the CPU tolerances hold.
# 3. first_run.log: the README's first command, timed (configs/segnet_skin.py).
# 4. benchmark.log, results.jsonl, summary.md: experiments/accelerator/benchmarks.py, i.e.
#    segjax.benchmark for U-Net 512x512 bfloat16 and SegNet batch 16 256x256 (bfloat16 and
#    float32) against PyTorch AMP channels-last where torch is installed, and U-Net and SegNet
#    with the CPU rewrites of the model ops, for the choice made in segjax.runtime.model_ops.
#
# --dry-run: the same steps at tiny sizes (the model-op tests collected, a 2-step first run on
# 32x32 images, two one-step benchmarks) on whatever JAX finds, e.g. a CPU: a check of this script.
# --data_dir: the TFDS data dir of the first run (default: TFDS's, ~/tensorflow_datasets).
# Results go to DIR (default experiments/accelerator/results/<UTC time>); copy what a
# document quotes next to it.
set -euo pipefail

cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
DRY_RUN=""
OUT=""
DATA_DIR=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY_RUN=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --data_dir) DATA_DIR="$2"; shift 2 ;;
    *) echo "check.sh: unknown argument '$1' (expected --dry-run, --out DIR, --data_dir DIR)" >&2
       exit 2 ;;
  esac
done
OUT=${OUT:-experiments/accelerator/results/$(date -u +%Y%m%d_%H%M%S)}
mkdir -p "$OUT"
# JAX and PyTorch share the device in one process: JAX allocates as it goes
# instead of taking 75% of the memory at start-up.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

TESTS="tests/test_backend.py tests/test_layers.py tests/test_max_pool.py tests/test_models.py
  tests/test_losses.py tests/test_metrics.py tests/test_optim.py tests/test_train.py"
FIRST_RUN_FLAGS=()
BENCHMARK_FLAGS=()
for test_file in $TESTS; do
  [[ -f "$test_file" ]] || { echo "check.sh: $test_file does not exist" >&2; exit 1; }
done
if [[ -n "$DRY_RUN" ]]; then
  TESTS=tests/test_backend.py  # Collected only: importing every test module takes long on a CPU.
  PYTEST_FLAGS=(--collect-only -q)
  FIRST_RUN_FLAGS=(--config.num_train_steps=2 --config.dataset.image_size=32
                   --config.model.width_multiplier=0.125 "--config.model.widths=(64,128)"
                   --config.eval_every_steps=2
                   --config.log_every_steps=1)
  BENCHMARK_FLAGS=(--dry-run)
else
  PYTEST_FLAGS=(-q)
fi
[[ -n "$DATA_DIR" ]] && FIRST_RUN_FLAGS+=("--config.dataset.data_dir=$DATA_DIR")

step() { echo "== $(date -u +%H:%M:%S) $*"; }

step "environment -> $OUT/environment.txt"
{
  date -u
  git log -1 --format='commit %H' 2>/dev/null || true
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv || true
  "$PYTHON" -c '
import jax
from segjax.runtime import device_peaks
device = jax.devices()[0]
print("jax", jax.__version__, "backend", jax.default_backend(), "devices", jax.devices())
for precision in ("bfloat16", "tf32", "float32"):
  peak = device_peaks.peak_flops(device.device_kind, precision)
  print(f"datasheet {precision} peak of {device.device_kind!r}:",
        f"{peak / 1e12:.1f} TFLOP/s" if peak else "not in segjax.runtime.device_peaks")
'
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

step "tests -> $OUT/tests.log"
# shellcheck disable=SC2086
JAX_DEFAULT_MATMUL_PRECISION=highest "$PYTHON" -m pytest "${PYTEST_FLAGS[@]}" $TESTS \
  > "$OUT/tests.log" 2>&1 || { tail -30 "$OUT/tests.log"; echo "tests failed" >&2; exit 1; }
tail -1 "$OUT/tests.log"

step "first run -> $OUT/first_run.log"
START=$(date +%s)
"$PYTHON" -m segjax.main --config configs/segnet_skin.py --workdir "$OUT/first_run" \
  "${FIRST_RUN_FLAGS[@]}" > "$OUT/first_run.log" 2>&1 \
  || { tail -30 "$OUT/first_run.log"; echo "first run failed" >&2; exit 1; }
echo "wall time: $(( $(date +%s) - START )) s" | tee -a "$OUT/first_run.log"
grep "final eval" "$OUT/first_run.log"

step "benchmarks -> $OUT/benchmark.log, results.jsonl, summary.md"
"$PYTHON" experiments/accelerator/benchmarks.py --out "$OUT" "${BENCHMARK_FLAGS[@]}" \
  > "$OUT/benchmark.log" 2>&1 || { tail -30 "$OUT/benchmark.log"; exit 1; }
cat "$OUT/summary.md"
step "done: $OUT"
