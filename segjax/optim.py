"""Optimizer and learning-rate schedule from the config."""

from __future__ import annotations

import ml_collections
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  if config.lr_schedule == "constant":
    return optax.constant_schedule(config.learning_rate)
  if config.lr_schedule == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.learning_rate, warmup_steps=config.warmup_steps,
        decay_steps=max(config.num_train_steps, config.warmup_steps + 1), end_value=0.0)
  raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}; use constant or warmup_cosine")


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(config)
  if config.optimizer == "adam":
    return optax.adam(schedule)
  if config.optimizer == "adamw":
    return optax.adamw(schedule, weight_decay=config.weight_decay)
  if config.optimizer == "sgd":
    return optax.sgd(schedule, momentum=0.9)
  raise ValueError(f"unknown optimizer {config.optimizer!r} (config key optimizer); "
                   "use adam, adamw or sgd")
