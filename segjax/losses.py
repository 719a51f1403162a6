"""Losses by name. Each returns (sum of the loss over counted pixels, their count)
so that a split's loss is exact however it is batched."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

Loss = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
_LOSSES: dict[str, Loss] = {}


def register(name: str):
  def wrap(fn):
    _LOSSES[name] = fn
    return fn
  return wrap


def get(name: str) -> Loss:
  if name not in _LOSSES:
    raise ValueError(f"unknown loss {name!r} (config key loss); available: {', '.join(sorted(_LOSSES))}")
  return _LOSSES[name]


@register("softmax_cross_entropy")
def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, valid: jax.Array):
  """logits float (N, H, W, C); labels int (N, H, W); valid bool (N, H, W)."""
  safe_labels = jnp.where(valid, labels, 0)
  per_pixel = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe_labels)
  return jnp.sum(per_pixel * valid), jnp.sum(valid).astype(jnp.float32)
