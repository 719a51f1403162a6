"""A training run's model and variables restored from its workdir, for inference."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import ml_collections

from segjax import checkpointing, outputs, sharding as sharding_lib, train
from segjax.data import pipeline


@dataclasses.dataclass
class RestoredRun:
  """config and labels (labels.json) of the run, its model, the checkpoint's step and the
  variables inference uses ({"params", "batch_stats"}, EMA parameters when kept)."""
  config: ml_collections.ConfigDict
  labels: dict
  model: nn.Module
  step: int
  variables: dict

  @property
  def num_classes(self) -> int:
    return self.labels["num_classes"]

  @property
  def num_channels(self) -> int:
    return self.labels["num_channels"]


def restore(workdir: str, step: int | str | None = None) -> RestoredRun:
  """The run in `workdir` at checkpoint `step` (a number, "best", or None for the latest),
  on one local device."""
  config, labels = outputs.read_run(workdir)
  manager, step = checkpointing.open_checkpoint(workdir, checkpointing.parse_step(step),
                                                config.max_to_keep)
  try:
    model = train.create_model(config, labels["num_classes"])
    mesh = sharding_lib.create_mesh(devices=jax.local_devices()[:1])
    height, width = pipeline.image_size(config.dataset)
    abstract = train.abstract_train_state(config, model, (height, width, labels["num_channels"]))
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding_lib.replicated(mesh)),
        abstract)
    state = checkpointing.restore_checked(manager, step, abstract)
  finally:
    manager.close()
  return RestoredRun(config, labels, model, step, train.inference_variables(state))
