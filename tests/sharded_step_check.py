"""Train steps on simulated CPU devices, compared with the same steps on one device.

Run in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8.
Prints, per variant, the largest differences as one JSON line. (Several
processes are compared through `segjax.main` in test_sharding.py.)
"""

import functools
import json
import sys

import jax
import numpy as np

from segjax import config as config_lib
from segjax.data import pipeline, synthetic_skin
from segjax.models import factory
from segjax.runtime import sharding
from segjax.training import trainer as trainer_lib

# One float32 step: the variants must agree to float32 rounding. Several steps
# in float64: BatchNorm's backward pass (gradients minus their batch means)
# amplifies float32 rounding by about 1e3 per step in these small random-init
# networks, so only float64 shows that the sharded math is the same over many
# steps.
STEPS = {"float32": 1, "float64": 3}


def make_config(model="segnet", dtype="float32", **overrides):
  config = config_lib.base_config()
  config.dtype = dtype
  config.model.name = model
  if model == "segnet":  # Two levels of 8 and 16 channels: every kind of layer, compiled fast.
    config.model.widths = (8, 16)
  if model == "simple_fcn":
    config.model.dropout_rate = 0.0  # Micro-batches draw other dropout masks.
  config.batch_size = 8
  config.eval_batch_size = 8
  # SGD: Adam's first update is about +-learning_rate for any gradient, so it would
  # turn float rounding in near-zero gradients into differences of that size.
  config.optimizer.name = "sgd"
  # Parameter differences are learning rate x gradient rounding differences.
  config.learning_rate = 0.005
  config.lr_schedule = "constant"  # A warmup would start at 0 and hide differences.
  for key, value in overrides.items():
    if key.startswith("mesh_"):
      config.mesh[key[5:]] = value
    else:
      config[key] = value
  return config


def global_batch(size):
  """Synthetic skin images at 32x32. (Random labels would make the gradient a
  tiny residual of large cancelling sums, dominated by float32 rounding.)"""
  records = [pipeline.resize({"image": image, "mask": mask[..., None]}, (32, 32))
             for image, mask in (synthetic_skin.generate_example(0, 0, i) for i in range(size))]
  batch = {"image": np.stack([r["image"] for r in records]),
           "mask": np.stack([r["mask"].reshape(32, 32) for r in records])}
  batch["mask"][0, :4] = 255  # Ignored pixels too.
  return batch


def run_steps(config, devices=None):
  model = factory.create_model(config, 2)
  mesh = sharding.create_mesh(config.mesh, devices)
  trainer = trainer_lib.Trainer(config, model, 2, (32, 32, 3), 255, mesh=mesh)
  batch = global_batch(config.batch_size)
  state, losses = trainer.state, []
  for _ in range(STEPS[config.dtype]):
    state, metrics = trainer.train_step(state, sharding.put_batch(batch, trainer.batch_sharding))
    losses.append(metrics["loss"])
  return jax.device_get((state.params, state.batch_stats, losses))


def max_diff(a, b):
  diffs = [float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
  return max(diffs, default=0.0)


def compare(variant, config_many, config_one):
  many = run_steps(config_many)
  one = run_steps(config_one, devices=jax.devices()[:1])
  return variant, {"params": max_diff(many[0], one[0]), "batch_stats": max_diff(many[1], one[1]),
                   "loss": max_diff(many[2], one[2]), "loss_value": float(one[2][0])}


def main():
  assert jax.device_count() == 8, jax.devices()
  jax.config.update("jax_enable_x64", True)
  results = {}
  results["data/float32"] = compare("data", make_config(), make_config())[1]
  variant = functools.partial(make_config, dtype="float64")
  results.update((f"{name}/float64", diffs) for name, diffs in [
      # Data parallel over 2 and parameters sharded over 4.
      compare("fsdp", variant(mesh_fsdp=4), variant()),
      # Accumulating 2 micro-batches on 8 devices is the 16-example step on one (without
      # BatchNorm, whose statistics are per micro-batch by design).
      compare("grad_accum_vs_large_batch",
              variant("simple_fcn", grad_accum_steps=2, batch_size=16),
              variant("simple_fcn", batch_size=16)),
  ])
  json.dump(results, sys.stdout)


if __name__ == "__main__":
  main()
