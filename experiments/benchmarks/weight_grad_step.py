"""A/B of a config's whole train step with and without the sliced weight
gradient (`segjax.models.convolution`), alternating step by step in one process.

  python experiments/benchmarks/weight_grad_step.py --config configs/segnet_skin.py \
      --config.dataset.image_size=128 --config.batch_size=8 [--steps 8] [--warmup 2]

Both steps are built as `segjax.benchmark` builds them (train.create_model,
train.Trainer, the same synthetic batch, the same initial parameters); the
"xla" variant sets `convolution.MIN_SLICED_GRADIENT_BYTES` out of reach while it is traced,
so every convolution keeps XLA's own weight gradient. The losses of the first
steps are printed to show both variants train the same way.
"""

from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

import jax  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

import alternate  # noqa: E402
from segjax import benchmark, sharding as sharding_lib, train  # noqa: E402
from segjax.models import convolution  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 8, "Timed steps per variant.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps per variant first.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "Default: config.dataset.num_classes.")


def main(argv):
  del argv
  config = _CONFIG.value
  num_classes = _NUM_CLASSES.value or config.dataset.num_classes
  size = config.dataset.image_size
  channels = 1 if config.dataset.grayscale else 3
  print(f"{config.model.name} batch {config.batch_size}, {size}x{size}; jax {jax.__version__}; "
        f"load average {os.getloadavg()}", flush=True)
  host = benchmark.synthetic_batch(config.batch_size, size, size, channels, num_classes)
  steps = {}
  for name, area in (("xla", 1 << 62), ("sliced", convolution.MIN_SLICED_GRADIENT_BYTES)):
    default, convolution.MIN_SLICED_GRADIENT_BYTES = convolution.MIN_SLICED_GRADIENT_BYTES, area
    try:
      trainer = train.Trainer(config, train.create_model(config, num_classes), num_classes,
                              (size, size, channels), config.dataset.ignore_index)
      batch = sharding_lib.put_batch(host, trainer.batch_sharding)
      start = time.perf_counter()
      compiled = trainer.train_step.lower(trainer.state, batch).compile()
    finally:
      convolution.MIN_SLICED_GRADIENT_BYTES = default
    print(f"{name}: compiled in {time.perf_counter() - start:.1f} s, "
          f"{benchmark.cost_flops(compiled) / 1e9:.1f} GFLOP per step (XLA)", flush=True)
    steps[name] = [compiled, trainer.state, batch]
  alternate.report(*alternate.run(steps, _WARMUP.value, _STEPS.value))
  print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
  app.run(main)
