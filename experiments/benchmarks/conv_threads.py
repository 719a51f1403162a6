"""How many of the 2 cores XLA:CPU's convolutions use: wall and CPU time per op.

  python experiments/benchmarks/conv_threads.py [--model segnet|unet] [--batch 8] [--size 128] \
      [--repeats 8]

For each 3x3 convolution of the model (the layer list of conv_ops.py), its
forward pass, input gradient and weight gradient as `jax.vjp` builds them
(XLA's own lowering, not segjax's sliced weight gradient), each jitted alone:
median wall time, process CPU time over the same calls, and their ratio, the
cores used. Then a sweep of forward passes that varies one dimension at a
time (batch, height, width, channels) around the 64x64x64 layers where the
ratio is 1. Host memory is kept as training keeps it.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from segjax import host_memory  # noqa: E402

SWEEP = [  # (N, H, W, C_in, C_out) of forward passes, stride 1.
    (8, 64, 64, 64, 64), (16, 64, 64, 64, 64), (4, 64, 64, 64, 64),
    (8, 128, 64, 64, 64), (8, 64, 128, 64, 64), (8, 64, 96, 64, 64), (8, 128, 128, 64, 64),
    (8, 64, 64, 128, 64), (8, 64, 64, 64, 128), (8, 64, 64, 128, 128), (8, 32, 32, 64, 64),
]


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def wall_and_cpu(fn, args, repeats: int) -> tuple[float, float]:
  """Median wall ms of `repeats` calls after one, and mean CPU ms per call."""
  import jax
  jax.block_until_ready(fn(*args))
  walls, cpu_start = [], _cpu_seconds()
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    walls.append(time.perf_counter() - start)
  return 1e3 * statistics.median(walls), 1e3 * (_cpu_seconds() - cpu_start) / repeats


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--model", default="segnet", choices=("segnet", "unet"))
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=8)
  args = parser.parse_args()
  retained = host_memory.configure()
  import jax
  import jax.numpy as jnp

  from conv_ops import MODELS, conv
  print(f"jax {jax.__version__}; host memory retained: {retained}; load average "
        f"{os.getloadavg()}", flush=True)

  def line(label, fn, *arrays):
    wall, cpu = wall_and_cpu(jax.jit(fn), arrays, args.repeats)
    print(f"{label:44s} wall {wall:7.1f} ms  CPU {cpu:7.1f} ms  cores {cpu / wall:4.2f}", flush=True)

  key = jax.random.key(0)
  for name, side, cin, cout, stride in MODELS[args.model](args.size):
    x = jax.random.normal(key, (args.batch, side, side, cin))
    w = jax.random.normal(key, (3, 3, cin, cout)) * 0.05
    dy = jnp.ones_like(conv(x, w, stride))
    tag = f"{name} {args.batch}x{side}x{side} {cin}->{cout}/{stride}"
    line(f"fwd {tag}", lambda x, w, s=stride: conv(x, w, s), x, w)
    if name not in ("enc64a", "down64a"):  # The image needs no gradient.
      line(f"dx  {tag}", lambda x, w, g, s=stride: jax.vjp(lambda x: conv(x, w, s), x)[1](g)[0],
           x, w, dy)
    line(f"dW  {tag}", lambda x, w, g, s=stride: jax.vjp(lambda w: conv(x, w, s), w)[1](g)[0],
         x, w, dy)
  print("sweep, forward passes:")
  for n, h, wd, cin, cout in SWEEP:
    x = jax.random.normal(key, (n, h, wd, cin))
    w = jax.random.normal(key, (3, 3, cin, cout)) * 0.05
    line(f"fwd {n}x{h}x{wd} {cin}->{cout}", lambda x, w: conv(x, w, 1), x, w)
  print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
  main()
