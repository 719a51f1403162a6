"""The benchmarks of the accelerator check (`check.sh`), run one after another in one process.

  python experiments/accelerator/benchmarks.py --out DIR [--dry-run] [--compare torch]

Each setting is `segjax.benchmark.run` on a config with overrides: U-Net at
512x512 in bfloat16, SegNet at batch 16 and 256x256 in bfloat16 and float32,
then U-Net and SegNet in bfloat16 again with the CPU rewrites of the model ops
(`SEGJAX_MODEL_OPS=rewritten`, `segjax.runtime.model_ops`): the measurement that
says whether XLA's own ops (the default off CPU) are the right choice there.
Writes DIR/results.jsonl (one JSON object per setting, as `segjax.benchmark`
prints it, plus `setting` and `model_ops`) and DIR/summary.md (a table).

`--dry-run`: a U-Net and a SegNet setting (XLA's ops and the rewritten ones)
at tiny sizes (32x32, batch 2, narrow models, one timed step), to check the
script on a CPU in seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (name, config file, overrides, SEGJAX_MODEL_OPS, compare with PyTorch)
SETTINGS = (
    ("unet_b8_512_bf16", "configs/unet.py",
     {"dataset.image_size": 512, "batch_size": 8, "dtype": "bfloat16"}, "auto", True),
    ("segnet_b16_256_bf16", "configs/segnet_skin.py",
     {"dataset.image_size": 256, "batch_size": 16, "dtype": "bfloat16",
      "model.width_multiplier": 1.0}, "auto", True),
    ("segnet_b16_256_f32", "configs/segnet_skin.py",
     {"dataset.image_size": 256, "batch_size": 16, "dtype": "float32",
      "model.width_multiplier": 1.0}, "auto", True),
    ("unet_b8_512_bf16_rewritten_ops", "configs/unet.py",
     {"dataset.image_size": 512, "batch_size": 8, "dtype": "bfloat16"}, "rewritten", False),
    ("segnet_b16_256_bf16_rewritten_ops", "configs/segnet_skin.py",
     {"dataset.image_size": 256, "batch_size": 16, "dtype": "bfloat16",
      "model.width_multiplier": 1.0}, "rewritten", False),
)
# Dry run: one setting of each model and of each form of the ops, at these sizes, one step.
DRY_RUN_SETTINGS = ("unet_b8_512_bf16", "segnet_b16_256_bf16_rewritten_ops")
DRY_RUN = {"dataset.image_size": 32, "batch_size": 2,
           "cpu_conv_kernels": "default"}  # No autotuning: it compiles the step twice.
DRY_RUN_MODEL = {"unet": {"model.depth": 1, "model.width_multiplier": 0.0625},
                 "segnet": {"model.widths": (8,)}}


def load_config(path: str, overrides: dict):
  spec = importlib.util.spec_from_file_location("config_module", os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.update_from_flattened_dict(overrides)
  return config


def _percent(value) -> str:
  return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "-"


def _number(value, digits=1) -> str:
  return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def summary_table(results: list[dict]) -> str:
  """A markdown table of the settings' results."""
  lines = ["| setting | segjax images/s | MFU (XLA count) | MFU (useful) | PyTorch images/s "
           "| PyTorch MFU | segjax / PyTorch | compile s | segjax memory GiB | PyTorch memory GiB |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in results:
    gib = lambda key: _number(r[key] / 2**30, 2) if r.get(key) else "-"
    lines.append(
        f"| {r['setting']} | {_number(r['images_per_sec'])} | {_percent(r['mfu'])} "
        f"| {_percent(r.get('useful_mfu'))} | {_number(r.get('torch_images_per_sec'))} "
        f"| {_percent(r.get('torch_mfu'))} | {_number(r.get('ratio'), 2)} "
        f"| {_number(r['compile_s'])} | {gib('step_memory_bytes')} "
        f"| {gib('torch_peak_memory_bytes')} |")
  first = results[0] if results else {}
  lines.append("")
  bases = "; ".join(dict.fromkeys(f"{r['dtype']}: {r['mfu_basis']}" for r in results))
  lines.append(f"Device: {first.get('devices')} x {first.get('device_kind')} "
               f"({first.get('backend')}), jax {first.get('jax_version')}. MFU against the "
               f"{bases}. Memory: XLA's analysis of segjax's compiled step "
               "(`step_memory_bytes`); PyTorch's peak allocation.")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="Folder for results.jsonl and summary.md.")
  parser.add_argument("--dry-run", action="store_true", help="Tiny sizes, one step each.")
  parser.add_argument("--compare", choices=("torch", ""), default="torch" if
                      importlib.util.find_spec("torch") else "",
                      help="Also time PyTorch (default: where it is installed).")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=5)
  args = parser.parse_args(argv)

  sys.path.insert(0, REPO)
  from segjax.runtime import host_memory
  host_memory.configure()  # As segjax.benchmark does, before JAX starts (a no-op off CPU).
  import jax
  from segjax import benchmark
  from segjax.runtime import model_ops as model_ops_lib

  os.makedirs(args.out, exist_ok=True)
  steps, warmup = (1, 1) if args.dry_run else (args.steps, args.warmup)
  matmul = {"matmul_size": 256, "matmul_repeats": 2} if args.dry_run else {}
  results = []
  with open(os.path.join(args.out, "results.jsonl"), "w") as jsonl:
    for name, path, overrides, model_ops, compare in SETTINGS:
      if args.dry_run:
        if name not in DRY_RUN_SETTINGS:
          continue
        overrides = {**overrides, **DRY_RUN, **DRY_RUN_MODEL[name.split("_")[0]]}
      print(f"== {name}: {path} {overrides} {model_ops_lib.ENVIRONMENT_VARIABLE}={model_ops}",
            flush=True)
      os.environ[model_ops_lib.ENVIRONMENT_VARIABLE] = model_ops
      jax.clear_caches()  # The ops are chosen when the step is traced.
      # PyTorch on the same device: a CPU or an NVIDIA GPU (not a TPU).
      compare_with = args.compare if compare and jax.default_backend() in ("cpu", "gpu") else ""
      # The dry run on a CPU takes PyTorch's GPU path too: channels-last (and AMP for bf16).
      result = benchmark.run(load_config(path, overrides), steps, warmup, compare_with,
                             log=lambda s: print(s, flush=True),
                             torch_channels_last=True if args.dry_run else None, **matmul)
      result.update(setting=name, model_ops=model_ops, overrides=overrides)
      jsonl.write(json.dumps(result) + "\n")
      jsonl.flush()
      results.append(result)
  os.environ.pop(model_ops_lib.ENVIRONMENT_VARIABLE)
  table = summary_table(results)
  with open(os.path.join(args.out, "summary.md"), "w") as f:
    f.write(table)
  print(table, flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
