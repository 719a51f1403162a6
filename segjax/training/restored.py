"""A training run's model and variables restored from its workdir, and the run's inference."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import ml_collections

from segjax import models
from segjax.data import pipeline
from segjax.inference import segmenter
from segjax.models import factory
from segjax.runtime import model_ops, sharding as sharding_lib
from segjax.training import checkpointing, outputs, train_state, writers


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
    model = factory.create_model(config, labels["num_classes"])
    mesh = sharding_lib.create_mesh(devices=jax.local_devices()[:1])
    height, width = pipeline.image_size(config.dataset)
    abstract = train_state.abstract_train_state(config, model,
                                                (height, width, labels["num_channels"]))
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding_lib.replicated(mesh)),
        abstract)
    state = checkpointing.restore_checked(manager, step, abstract)
  finally:
    manager.close()
  return RestoredRun(config, labels, model, step, train_state.inference_variables(state))


def create_segmenter(config: ml_collections.ConfigDict, model: nn.Module, num_channels: int,
                     batch_sharding=None, **overrides) -> segmenter.Segmenter:
  """The run's inference (config.eval, dataset.resize/scale/image_size) on the platform of
  `batch_sharding`'s mesh (default: the first local device); `overrides` replace
  `segmenter.Options` fields."""
  options = segmenter.Options.from_config(
      config, models.total_stride(model, num_channels), **overrides)
  device = (batch_sharding.mesh.devices.flat[0] if batch_sharding is not None
            else jax.local_devices()[0])
  apply_fn = model_ops.traced_for(device.platform, model.apply)
  return segmenter.Segmenter(apply_fn, options, batch_sharding, writers.log)
