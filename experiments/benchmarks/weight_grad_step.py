"""A/B of a config's whole train step with and without the sliced weight
gradient (`segjax.models.convolution`), alternating step by step in one process.

  python experiments/benchmarks/weight_grad_step.py --config configs/segnet_skin.py \
      --config.model.width_multiplier=1.0 --config.dataset.image_size=128 \
      --config.batch_size=8 [--steps 8] [--warmup 2]

Both steps are built as `segjax.benchmark` builds them (train.create_model,
train.Trainer, the same synthetic batch, the same initial parameters); the
"xla" variant sets `convolution.MIN_SLICED_GRADIENT_BYTES` out of reach while it is traced,
so every convolution keeps XLA's own weight gradient. The losses of the first
steps are printed to show both variants train the same way.
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
from segjax.models import convolution  # noqa: E402


if __name__ == "__main__":
  alternate.ab_main({
      "xla": functools.partial(alternate.replaced, convolution, "MIN_SLICED_GRADIENT_BYTES",
                               1 << 62),
      "sliced": contextlib.nullcontext})
