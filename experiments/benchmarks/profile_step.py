"""Where a SegNet (or U-Net) train step's time goes, segjax (XLA:CPU) and PyTorch eager.

  python experiments/benchmarks/profile_step.py [--model segnet|unet] [--batch 8] [--size 128] [--steps 2] [--top 0]

segjax: a jax.profiler trace of `--steps` steps; each XLA op's time is matched
to the optimized HLO (dumped to a temporary XLA_FLAGS=--xla_dump_to folder) and
put in a category: convolution forward / input gradient / weight gradient (the
transposed convolutions apart), transposes and copies, the rest (BatchNorm,
ReLU, loss, Adam, norms: elementwise and reductions); `--top N` also lists
the N slowest ops with their shape and source. PyTorch: torch.profiler
self CPU time of the same number of steps, by aten op. Steps alternate.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

DUMP = tempfile.mkdtemp(prefix="xla_dump_")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_dump_to={DUMP}").strip()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
import torch  # noqa: E402

from benchmarks import torch_models  # noqa: E402
from segjax import config as config_lib  # noqa: E402
from segjax.data import pipeline  # noqa: E402
from segjax.models import factory
from segjax.runtime import host_memory, sharding as sharding_lib
from segjax.training import trainer as trainer_lib


def hlo_categories(hlo: str) -> tuple[dict[str, str], dict[str, str]]:
  """Instruction name -> category, and -> "shape  source", for the entry computation's ops."""
  fused = {}
  current = None
  for line in hlo.splitlines():
    m = re.match(r"^%?([\w.\-]+) \(.*\{$", line)
    if m:
      current = m.group(1)
      fused[current] = []
    elif current and line.startswith("  "):
      fused[current].append(line)
  result, descriptions = {}, {}
  for line in hlo.splitlines():
    m = re.match(r"^\s+(?:ROOT )?%?([\w.\-]+) = (\w+)\[([\d,]*)\]", line)
    if not m:
      continue
    name, _, dims = m.groups()
    dims = [int(d) for d in dims.split(",") if d]
    calls = re.search(r"calls=%?([\w.\-]+)", line)
    body = line + "".join(fused.get(calls.group(1), [])) if calls else line
    op_name = re.search(r'op_name="([^"]*)"', body)
    op_name = op_name.group(1) if op_name else ""
    descriptions[name] = f"{m.group(2)}[{m.group(3)}]  {op_name[-90:]}"
    if "convolution(" in body:
      conv_line = line if "convolution(" in line else next(
          l for l in fused.get(calls.group(1), []) if "convolution(" in l)
      found = re.search(r'op_name="([^"]*)"', conv_line)
      op_name = found.group(1) if found else op_name
      kernel_shaped = len(dims) == 4 and dims[1] in (1, 2, 3) and dims[2] in (1, 2, 3)
      part = "weight grad" if kernel_shaped else (
          "input grad" if "transpose(" in op_name else "forward")
      # Fusions without metadata: in SegNet only the packed transposed convolutions
      # have 2x2 windows.
      packed = kernel_shaped and dims[1] == 2 and dims[2] == 2
      layer = "transposed conv" if "ConvTranspose" in op_name or packed else "conv"
      result[name] = f"{layer} {part}"
    elif "dot(" in body:
      result[name] = "matmul"
    elif "select-and-scatter" in body or "scatter(" in body:
      result[name] = "max-pool gradient (select-and-scatter)"
    elif "reduce-window(" in body:
      result[name] = "max-pool (reduce-window)"
    elif re.match(r"(transpose|copy)", name) or "copy_bitcast" in name:
      result[name] = "transpose / copy"
    else:
      result[name] = "elementwise, reductions, optimizer"
  return result, descriptions


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--steps", type=int, default=2)
  parser.add_argument("--model", default="segnet", choices=("segnet", "unet"))
  parser.add_argument("--top", type=int, default=0, help="list the N slowest segjax ops")
  args = parser.parse_args()
  retained = host_memory.configure()  # As training does, for both frameworks.
  config = config_lib.base_config()
  config.model.name = args.model
  config.dataset.image_size = args.size
  config.batch_size = args.batch
  host = pipeline.synthetic_batch(args.batch, args.size, args.size, 3, 2)
  trainer = trainer_lib.Trainer(config, factory.create_model(config, 2), 2, (args.size, args.size, 3), 255)
  batch = sharding_lib.put_batch(host, trainer.batch_sharding)
  compiled = trainer.train_step.lower(trainer.state, batch).compile()
  state = trainer.state
  torch_trainer = torch_models.TorchTrainer(config, 2, 3, host)
  for _ in range(2):
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    torch_trainer.step()
  print(f"{args.model} batch {args.batch}, {args.size}x{args.size}; host memory retained: "
        f"{retained}; load average {os.getloadavg()}")
  trace_dir = tempfile.mkdtemp(prefix="jax_trace_")
  torch_events = collections.Counter()
  jax_wall, torch_wall = [], []
  for _ in range(args.steps):
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    start = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    jax_wall.append(time.perf_counter() - start)
    jax.profiler.stop_trace()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
      torch_wall.append(torch_trainer.step()[0])
    for event in prof.key_averages():
      torch_events[event.key] += event.self_cpu_time_total / 1e3
  hlo_files = [p for p in glob.glob(f"{DUMP}/*jit_train_step*after_optimizations.txt")]
  categories, descriptions = hlo_categories(open(min(hlo_files, key=len)).read())
  totals = collections.defaultdict(float)
  per_op = collections.Counter()
  wall = 0.0
  for path in glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True):
    events = json.load(gzip.open(path))
    events = events["traceEvents"] if isinstance(events, dict) else events
    for e in events:
      if e.get("ph") != "X":
        continue
      if e["name"] in categories:
        totals[categories[e["name"]]] += e["dur"] / 1e3 / args.steps
        per_op[e["name"]] += e["dur"] / 1e3 / args.steps
      elif e["name"].startswith("ThunkExecutor::Execute (wait"):
        wall += e["dur"] / 1e3 / args.steps
  print(f"\nsegjax, ms per step (sum of op times over {args.steps} steps / steps; ops run on "
        f"2 threads, so the sum can exceed wall time):")
  for k, v in sorted(totals.items(), key=lambda kv: -kv[1]):
    print(f"  {v:8.1f}  {k}")
  print(f"  {sum(totals.values()):8.1f}  total; wall time {1e3 * sum(jax_wall) / args.steps:.1f} ms "
        "per step (profiled)")
  if args.top:
    print(f"\nsegjax's {args.top} slowest ops, ms per step:")
    for name, ms in per_op.most_common(args.top):
      print(f"  {ms:8.1f}  {categories[name][:24]:24}  {name[:28]:28}  {descriptions[name]}")
  groups = collections.defaultdict(float)
  for key, ms in torch_events.items():
    if key in ("aten::convolution_backward",):
      group = "conv + transposed conv backward (oneDNN)"
    elif key in ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution", "aten::conv2d",
                 "aten::slow_conv_transpose2d", "aten::conv_transpose2d", "aten::_slow_conv2d_forward"):
      group = "conv + transposed conv forward"
    elif "batch_norm" in key:
      group = "batch norm (fwd + bwd)"
    elif "adam" in key.lower() or key.startswith("aten::_foreach"):
      group = "Adam (foreach)"
    else:
      group = "other"
    groups[group] += ms / args.steps
  print("\ntorch, self CPU ms per step by op group:")
  for k, v in sorted(groups.items(), key=lambda kv: -kv[1]):
    print(f"  {v:8.1f}  {k}")
  print(f"  {sum(groups.values()):8.1f}  total; wall time {1e3 * sum(torch_wall) / args.steps:.1f} "
        "ms per step (profiled)")
  print("\ntorch top ops:")
  for key, ms in torch_events.most_common(12):
    print(f"  {ms / args.steps:8.1f}  {key}")
  print(f"\nload average {os.getloadavg()}")


if __name__ == "__main__":
  main()
