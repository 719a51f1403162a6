"""A/B of a config's whole train step with each `config.cpu_conv_kernels` choice
(XLA's default kernels, Eigen convolutions), alternating step by step in one process.

  python experiments/benchmarks/conv_kernels_step.py --config configs/unet.py --num_classes 4 \
      --config.dataset.image_size=128 --config.batch_size=4 [--steps 8] [--warmup 2]

Both steps are built as `segjax.benchmark` builds them; the losses of the first
steps are printed to show both variants train the same way. This is the
measurement `cpu_conv_kernels="autotune"` makes at start-up, with more steps.
"""

from __future__ import annotations

import functools
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

import alternate  # noqa: E402


def _kernels(config, choice):
  return alternate.replaced(config, "cpu_conv_kernels", choice)


if __name__ == "__main__":
  alternate.ab_main({choice: functools.partial(_kernels, choice=choice)
                     for choice in ("default", "eigen")}, pass_config=True)
