"""A training run's workdir without training: config.json, labels.json and checkpoints
of an initial SegNet state (1/8 width, 32x32), written in about a second."""

import json
import os

import jax

from conftest import small_config
from segjax.models import factory
from segjax.runtime import sharding as sharding_lib
from segjax.training import checkpointing, outputs, train_state

LABELS = {"num_classes": 2, "class_names": ["background", "skin"], "num_channels": 3,
          "ignore_index": 255}


def write_run(workdir: str, data_dir: str = "unused", steps=(6,), ema_decay: float = 0.0):
  """(config, state) of a run in `workdir` with a checkpoint of `state` at each of `steps`;
  with `ema_decay` its moving average is half the parameters (told apart from them)."""
  config = small_config(data_dir)
  config.ema_decay = ema_decay
  model = factory.create_model(config, LABELS["num_classes"])
  mesh = sharding_lib.create_mesh(devices=jax.local_devices()[:1])
  state = train_state.create_train_state(config, model, (32, 32, 3), mesh)
  if ema_decay:
    state = state.replace(ema_params=jax.tree.map(lambda p: p / 2, state.params))
  os.makedirs(workdir, exist_ok=True)
  outputs.write_config(config, workdir, 0)
  with open(os.path.join(workdir, outputs.LABELS_FILE), "w") as f:
    json.dump(LABELS, f)
  manager = checkpointing.create_manager(workdir, 3)
  for step in steps:
    checkpointing.save(manager, step, state.replace(step=step))
  manager.wait_until_finished()
  manager.close()
  return config, state
