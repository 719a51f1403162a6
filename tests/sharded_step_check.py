"""Run in a subprocess with 8 simulated CPU devices (XLA_FLAGS set by the caller).

Compares one train step on a mesh of 8 devices with the same step on 1 device;
prints the largest differences as JSON.
"""

import json
import sys

import jax
import numpy as np

from segjax import config as config_lib, sharding, train


def run_step(config, mesh, batch):
  model = train.create_model(config, 2)
  trainer = train.Trainer(config, model, 2, (32, 32, 3), 255, mesh=mesh)
  state, metrics = trainer.train_step(trainer.state, sharding.put_batch(batch, trainer.batch_sharding))
  state, metrics = trainer.train_step(state, sharding.put_batch(batch, trainer.batch_sharding))
  return jax.device_get(state.params), jax.device_get(state.batch_stats), jax.device_get(metrics)


def main():
  assert jax.device_count() == 8, jax.devices()
  config = config_lib.base_config()
  config.model.width_multiplier = 0.125
  config.batch_size = 8
  config.eval_batch_size = 8
  # SGD: Adam's first update is about +-learning_rate for any gradient, so it would
  # turn float rounding in near-zero gradients into differences of that size.
  config.optimizer = "sgd"
  config.learning_rate = 0.05
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
           "mask": rng.integers(0, 2, (8, 32, 32), dtype=np.uint8)}
  batch["mask"][0, :4] = 255  # Ignored pixels too.
  many = run_step(config, sharding.create_mesh(), batch)
  one = run_step(config, sharding.create_mesh(devices=jax.devices()[:1]), batch)
  diff = lambda a, b: max(float(np.max(np.abs(x - y))) for x, y in zip(
      jax.tree.leaves(a), jax.tree.leaves(b)))
  json.dump({"params": diff(many[0], one[0]), "batch_stats": diff(many[1], one[1]),
             "loss": abs(float(many[2]["loss"]) - float(one[2]["loss"])),
             "loss_value": float(one[2]["loss"])}, sys.stdout)


if __name__ == "__main__":
  main()
