"""Optimizer, learning-rate schedule and parameter freezing from the config."""

from __future__ import annotations

import re
from typing import Sequence

import jax
import ml_collections
import optax
from flax import traverse_util


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """`lr_schedule`: constant | warmup_cosine | polynomial (warmup, then
  lr * (1 - t)^lr_power down to 0, as in DeepLab's "poly")."""
  steps = max(config.num_train_steps, config.warmup_steps + 1)
  if config.lr_schedule == "constant":
    return optax.constant_schedule(config.learning_rate)
  if config.lr_schedule == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.learning_rate, warmup_steps=config.warmup_steps,
        decay_steps=steps, end_value=0.0)
  if config.lr_schedule == "polynomial":
    decay = optax.polynomial_schedule(config.learning_rate, 0.0, config.lr_power,
                                      steps - config.warmup_steps)
    if not config.warmup_steps:
      return decay
    warmup = optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)
    return optax.join_schedules([warmup, decay], [config.warmup_steps])
  raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}; "
                   "use constant, warmup_cosine or polynomial")


def path_name(path) -> str:
  return "/".join(str(getattr(key, "key", key)) for key in path)


def frozen_mask(params, patterns: Sequence[str]):
  """A pytree of bools like `params`: True where the '/'-joined path (e.g.
  `encoder/block1_conv1/kernel`) fully matches one of `patterns`."""
  compiled = [re.compile(p) for p in patterns]
  return jax.tree_util.tree_map_with_path(
      lambda path, _: any(c.fullmatch(path_name(path)) for c in compiled), params)


def check_patterns_match(params, patterns: Sequence[str]) -> None:
  names = ["/".join(k) for k in traverse_util.flatten_dict(params)]
  for pattern in patterns:
    if not any(re.fullmatch(pattern, name) for name in names):
      raise ValueError(f"optimizer.freeze pattern {pattern!r} matches no parameter; "
                       f"parameter paths look like {names[0]!r}")


ENCODER_PATTERN = "encoder/.*"


def create_optimizer(config: ml_collections.ConfigDict,
                     frozen_patterns: Sequence[str] = ()) -> optax.GradientTransformation:
  """The configured optimizer; parameters matching `frozen_patterns` get no update, and
  those of the model's `encoder` submodule a learning rate `optimizer.encoder_lr_multiplier`
  times the schedule's (the usual fine-tuning of a pretrained encoder)."""
  opt = config.optimizer
  schedule = learning_rate_schedule(config)
  if opt.name == "adam":
    tx = optax.adam(schedule)
  elif opt.name == "adamw":
    tx = optax.adamw(schedule, weight_decay=opt.weight_decay)
  elif opt.name == "sgd":
    tx = optax.sgd(schedule, momentum=opt.momentum or None, nesterov=opt.nesterov)
  else:
    raise ValueError(f"unknown optimizer {opt.name!r} (config key optimizer.name); "
                     "use adam, adamw or sgd")
  if opt.l2_regularization:
    # L2 regularisation as a loss term (gradient l2 * w) on kernels, as Keras'
    # kernel_regularizer; unlike AdamW's decay it passes through Adam's scaling.
    kernels = lambda params: jax.tree_util.tree_map_with_path(
        lambda path, _: path_name(path).endswith("kernel"), params)
    tx = optax.chain(optax.masked(optax.add_decayed_weights(2 * opt.l2_regularization), kernels),
                     tx)
  multiplier = opt.get("encoder_lr_multiplier", 1.0)
  if not frozen_patterns and multiplier == 1.0:
    return tx

  def labels(params):
    frozen = frozen_mask(params, frozen_patterns)
    encoder = frozen_mask(params, (ENCODER_PATTERN,) if multiplier != 1.0 else ())
    return jax.tree.map(lambda f, e: "frozen" if f else "encoder" if e else "trained",
                        frozen, encoder)

  # Every update these optimizers make is proportional to the learning rate (AdamW's decay
  # included), so scaling the update scales the encoder's learning rate.
  return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero(),
                                "encoder": optax.chain(tx, optax.scale(multiplier))}, labels)
