"""Forward + backward of a max-pool, `flax.linen.max_pool` against `segjax.models.layers.max_pool`.

  python experiments/benchmarks/max_pool_ops.py [--repeats 7]

Each line: a pooled activation shape of a model here, the median time of a
jitted value-and-gradient of sum(pool(x)**2) with each implementation
(alternating), and the largest difference between their gradients (the input
is a permutation of distinct values, so no window holds tied maxima and the two
gradients must agree).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from segjax.models import layers  # noqa: E402

# (name, input shape, window, strides, padding)
POOLS = [
    ("unet level 1, batch 4, 128x128", (4, 128, 128, 64), (2, 2), (2, 2), "VALID"),
    ("unet level 2", (4, 64, 64, 128), (2, 2), (2, 2), "VALID"),
    ("unet level 3", (4, 32, 32, 256), (2, 2), (2, 2), "VALID"),
    ("conv_autoencoder module 1, batch 16, 128x128", (16, 64, 64, 64), (2, 2), (2, 2), "VALID"),
    ("vgg16 block 1, batch 8, 128x128", (8, 128, 128, 64), (2, 2), (2, 2), "VALID"),
    ("fc_densenet stem, batch 4, 128x128", (4, 64, 64, 64), (3, 3), (2, 2), ((1, 1), (1, 1))),
]


def value_and_grad(pool):
  return jax.jit(jax.value_and_grad(lambda x: jnp.sum(pool(x) ** 2)))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()
  print(f"jax {jax.__version__}; load average {os.getloadavg()}")
  for name, shape, window, strides, padding in POOLS:
    size = int(np.prod(shape))
    x = jax.random.permutation(jax.random.key(0), size).reshape(shape).astype(jnp.float32) / size
    variants = {
        "nn.max_pool": value_and_grad(lambda x: nn.max_pool(x, window, strides, padding)),
        "layers.max_pool": value_and_grad(lambda x: layers.max_pool(x, window, strides, padding)),
    }
    grads = {key: jax.block_until_ready(f(x))[1] for key, f in variants.items()}
    times = {key: [] for key in variants}
    for _ in range(args.repeats):
      for key, f in variants.items():
        start = time.perf_counter()
        jax.block_until_ready(f(x))
        times[key].append(1e3 * (time.perf_counter() - start))
    old, new = (statistics.median(times[key]) for key in variants)
    difference = float(jnp.max(jnp.abs(grads["nn.max_pool"] - grads["layers.max_pool"])))
    print(f"{name} {shape} window {window} strides {strides}: nn.max_pool {old:.1f} ms, "
          f"layers.max_pool {new:.1f} ms, {old / new:.1f}x; gradient difference {difference:.1e}",
          flush=True)
  print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
  main()
