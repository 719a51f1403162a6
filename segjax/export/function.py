"""The function an export holds: uint8 images in, the run's preprocessing and model inside."""

from __future__ import annotations

from typing import Callable

import jax

from segjax.inference import segmenter
from segjax.scoring import losses

OUTPUT_KINDS = ("classes", "probabilities")


def inference_function(apply_fn: Callable, variables: dict, normalization: str,
                       output_kind: str, flip: bool = False) -> Callable[[jax.Array], jax.Array]:
  """images -> the prediction evaluation and `segjax.predict` make, with `variables`' weights.

  `segmenter.model_logits` (normalisation, network, flip averaging) then
  int32 (N, H, W) class indices ("classes", `losses.predicted_classes`) or
  float32 (N, H, W, max(num_classes, 2)) probabilities ("probabilities",
  `losses.probabilities`), from uint8 (N, H, W, C) images.
  """
  if output_kind not in OUTPUT_KINDS:
    raise ValueError(f"--output_kind {output_kind!r}: use one of {', '.join(OUTPUT_KINDS)}")
  head = losses.predicted_classes if output_kind == "classes" else losses.probabilities

  def predict(images: jax.Array) -> jax.Array:
    return head(segmenter.model_logits(apply_fn, variables, images, normalization, flip))
  return predict
