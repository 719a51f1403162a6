"""A/B of the whole SegNet train step with the transposed convolution's
formulation swapped, alternating step by step in one process.

  python experiments/benchmarks/step_variants.py [--batch 8] [--size 128] [--steps 10] [--torch]

Every variant is built as `segjax.benchmark` builds the step (train.create_model,
train.Trainer, the same synthetic batch); only `segjax.models.layers.conv_transpose`
is replaced while the step is traced. Variants (see conv_transpose_ops.py):
packed (the current code), per_phase, matmul.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

import alternate  # noqa: E402
import conv_transpose_ops  # noqa: E402
from segjax import config as config_lib  # noqa: E402
from segjax.models import layers  # noqa: E402

ORIGINAL = layers.conv_transpose


def _is_3x3_s2_same(kernel, strides, padding, transpose_kernel):
  return (kernel.shape[:2] == (3, 3) and tuple(strides) == (2, 2) and padding == "SAME"
          and not transpose_kernel)


def per_phase(x, kernel, strides, padding="SAME", transpose_kernel=False, precision=None):
  if not _is_3x3_s2_same(kernel, strides, padding, transpose_kernel):
    return ORIGINAL(x, kernel, strides, padding, transpose_kernel, precision)
  return conv_transpose_ops.per_phase(x, kernel)


def matmul(x, kernel, strides, padding="SAME", transpose_kernel=False, precision=None):
  if not _is_3x3_s2_same(kernel, strides, padding, transpose_kernel):
    return ORIGINAL(x, kernel, strides, padding, transpose_kernel, precision)
  return conv_transpose_ops.matmul_col2im(x, kernel)


VARIANTS = {"packed": ORIGINAL, "per_phase": per_phase, "matmul": matmul}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--torch", action="store_true",
                      help="also alternate PyTorch's eager step (benchmarks/torch_models.py)")
  args = parser.parse_args()
  config = config_lib.base_config()
  config.model.name = "segnet"
  config.dataset.image_size = args.size
  config.batch_size = args.batch
  names = args.variants.split(",")
  variants = {name: functools.partial(alternate.replaced, layers, "conv_transpose", VARIANTS[name])
              for name in names}
  steps, host = alternate.compile_variants(config, 2, variants)
  torch_trainer = None
  if args.torch:
    from benchmarks import torch_models
    torch_trainer = torch_models.TorchTrainer(config, 2, 3, host)
  times, cpu, losses = alternate.run(steps, args.warmup, args.steps, torch_trainer)
  alternate.report(times, cpu, losses)
  if torch_trainer is not None:
    med = statistics.median(times["torch"])
    print(f"{'torch':10s} median {med:.3f} s (min {min(times['torch']):.3f}), "
          f"{statistics.median(cpu['torch']):.2f} CPU-s; segjax/torch images/s ratio: " + ", ".join(
              f"{name} {med / statistics.median(times[name]):.2f}" for name in names))
  print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
  main()
