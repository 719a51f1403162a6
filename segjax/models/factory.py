"""The configured model: `create_model(config, num_classes)` and the input it expects.

Everything that builds a model from a config goes through here, so inference,
export and the command-line tools never import the training loop.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from segjax import config as config_lib
from segjax import models
from segjax.data import normalize


NON_MODEL_KEYS = ("name", "pretrained", "pretrained_path", "num_outputs")


def num_outputs(config: ml_collections.ConfigDict, num_classes: int) -> int:
  """Logit channels: `model.num_outputs` (1: one sigmoid logit for two classes), or
  0 for one per class."""
  outputs = config.model.get("num_outputs", 0)
  if outputs == 0:
    return num_classes
  if outputs == 1 and num_classes == 2:
    return 1
  raise ValueError(f"model.num_outputs={outputs} does not fit a dataset of {num_classes} "
                   f"classes: use 0 (one logit per class) or, for two classes, 1 (a sigmoid)")


def input_normalization(config: ml_collections.ConfigDict) -> str:
  """The run's `dataset.normalization`, resolved for its model (normalize.mode_for: a
  pretrained encoder's own, else "unit" when the key is empty)."""
  return normalize.mode_for(config, create_model(config, 2))


def create_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """The configured model, with `num_outputs(config, num_classes)` logit channels.

  A base-config model option left at its default is ignored by a model without it
  (configs need not delete `model.width_multiplier` for an encoder with fixed widths,
  and a stored run's config, laid over the base config, rebuilds the same model);
  set to another value, it is an error that names it.
  """
  options = {key: value for key, value in config.model.items() if key not in NON_MODEL_KEYS}
  base = config_lib.base_config().model
  defaults = [key for key, value in options.items() if key in base and base[key] == value]
  return models.build(config.model.name, num_outputs(config, num_classes),
                      dtype=jnp.dtype(config.dtype), defaults=defaults, **options)
