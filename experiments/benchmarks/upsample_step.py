"""A/B of a config's whole train step with the kernel-equals-stride transposed
convolutions as segjax computed them before (a 1x1 convolution whose kernel a
gather picks) and as `layers._matmul_phases` computes them now, alternating
step by step in one process.

  python experiments/benchmarks/upsample_step.py --config configs/unet.py --num_classes 4 \
      --config.dataset.image_size=128 --config.batch_size=4 [--steps 8] [--warmup 2]

The losses of the first steps are printed to show both variants train the same way.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

import alternate  # noqa: E402
import upsample_ops  # noqa: E402
from segjax.models import layers  # noqa: E402

if __name__ == "__main__":
  alternate.ab_main({
      "conv_gather": functools.partial(alternate.replaced, layers, "_matmul_phases",
                                       upsample_ops.conv_gather_phases),
      "matmul": contextlib.nullcontext})
