"""A/B of a config's whole train step with flax's max-pool and with
`segjax.models.layers.max_pool`, alternating step by step in one process.

  python experiments/benchmarks/max_pool_step.py --config configs/unet.py --num_classes 4 \
      --config.dataset.image_size=128 --config.batch_size=4 [--steps 8] [--warmup 2]

Both steps are built as `segjax.benchmark` builds them; the "flax_pool" variant
traces the model with `layers.max_pool` replaced by `flax.linen.max_pool`
(a reduce-window, whose gradient XLA:CPU computes with an arg-max and a
scatter). The losses of the first steps are printed to show both variants
train the same way.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

import flax.linen as nn  # noqa: E402

import alternate  # noqa: E402
from segjax.models import layers  # noqa: E402


def _flax_max_pool(x, window, strides=None, padding="VALID"):
  return nn.max_pool(x, tuple(window), tuple(strides or window), padding)


if __name__ == "__main__":
  alternate.ab_main({
      "flax_pool": functools.partial(alternate.replaced, layers, "max_pool", _flax_max_pool),
      "reshape": contextlib.nullcontext})
