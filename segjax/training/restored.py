"""A training run's model and variables restored from its workdir, and the run's inference.

Only what inference uses is read from the checkpoint: the parameters (the moving
average when the run kept one) and the BatchNorm statistics, not the optimizer
state (for Adam, twice the parameters) nor the raw parameters beside an average.
"""

from __future__ import annotations

import dataclasses
import os

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
  on one local device, with the config that trained that checkpoint (`outputs.read_run`:
  a resumed run's changed config too)."""
  config, labels = outputs.read_run(workdir)  # A FileNotFoundError unless a run's workdir.
  manager, step = checkpointing.open_checkpoint(workdir, checkpointing.parse_step(step),
                                                config.max_to_keep)
  try:
    folder = os.path.join(os.fspath(manager.directory), str(step), "state")
  finally:
    manager.close()
  config, labels = outputs.read_run(workdir, step)
  model = factory.create_model(config, labels["num_classes"])
  height, width = pipeline.image_size(config.dataset)
  abstract = train_state.inference_variables(train_state.abstract_train_state(
      config, model, (height, width, labels["num_channels"])))
  variables = checkpointing.read_variables(folder)  # No optimizer state is read.
  variables.setdefault("batch_stats", {})
  mismatch = _mismatch(variables, abstract)
  if mismatch:
    raise checkpointing.CheckpointMismatchError(
        f"checkpoint {folder} holds variables unlike those the run's config builds (another "
        f"model or option?): {mismatch}")
  mesh = sharding_lib.create_mesh(devices=jax.local_devices()[:1])
  variables = jax.device_put(variables, sharding_lib.replicated(mesh))
  return RestoredRun(config, labels, model, step, variables)


def _mismatch(saved: dict, expected: dict) -> str | None:
  """How the arrays of two variable trees differ in names, shapes or dtypes, if they do."""
  describe = lambda tree: {jax.tree_util.keystr(path): f"{x.dtype}{list(x.shape)}"
                           for path, x in jax.tree_util.tree_leaves_with_path(tree)}
  saved, expected = describe(saved), describe(expected)
  if saved == expected:
    return None
  differing = [f"{key}: saved {saved.get(key, '-')}, built {expected.get(key, '-')}"
               for key in sorted(set(saved) | set(expected)) if saved.get(key) != expected.get(key)]
  return f"{len(differing)} of {len(set(saved) | set(expected))} arrays differ, e.g. " + (
      "; ".join(differing[:4]))


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
