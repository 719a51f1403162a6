"""The function an export holds: uint8 images in, the run's preprocessing and model inside."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from segjax import train

OUTPUT_KINDS = ("classes", "probabilities")


def inference_state(apply_fn: Callable, variables: dict) -> train.TrainState:
  """A state holding only what inference reads: `variables` ("params", "batch_stats")."""
  return train.TrainState.create(apply_fn=apply_fn, params=variables["params"],
                                 tx=optax.identity(),
                                 batch_stats=variables.get("batch_stats", {}))


def inference_function(state: train.TrainState, normalization: str, output_kind: str,
                       flip: bool = False) -> Callable[[jax.Array], jax.Array]:
  """images -> the prediction `segjax.predict` and evaluation make, with `state`'s weights.

  The function maps uint8 (N, H, W, C) to int32 (N, H, W) class indices
  ("classes") or float32 (N, H, W, max(num_classes, 2)) probabilities
  ("probabilities"); the run's normalisation and flip averaging are inside.
  """
  if output_kind not in OUTPUT_KINDS:
    raise ValueError(f"--output_kind {output_kind!r}: use one of {', '.join(OUTPUT_KINDS)}")

  def predict(images: jax.Array) -> jax.Array:
    probabilities = train.predict_probabilities(state, images, normalization, flip)
    if output_kind == "probabilities":
      return probabilities
    return jnp.argmax(probabilities, -1).astype(jnp.int32)
  return predict
