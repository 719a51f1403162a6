"""Image normalisation, on the device (batches travel as uint8).

`dataset.normalization`:
  "unit"       x / 127.5 - 1, values in [-1, 1] (default).
  "imagenet"   (x / 255 - mean) / std with the ImageNet statistics, for
               pretrained encoders (grayscale uses their average).
  "per_image"  each image to zero mean and unit variance over its pixels and
               channels (as tf.image.per_image_standardization).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODES = ("unit", "imagenet", "per_image")


def normalize_images(images: jax.Array, mode: str = "unit") -> jax.Array:
  """uint8 (N, H, W, C) -> float32 (N, H, W, C)."""
  x = images.astype(jnp.float32)
  if mode == "unit":
    return x / 127.5 - 1.0
  if mode == "imagenet":
    channels = x.shape[-1]
    mean, std = jnp.asarray(IMAGENET_MEAN), jnp.asarray(IMAGENET_STD)
    if channels != 3:
      mean, std = jnp.full((channels,), mean.mean()), jnp.full((channels,), std.mean())
    return (x / 255.0 - mean) / std
  if mode == "per_image":
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    count = x.shape[1] * x.shape[2] * x.shape[3]
    std = jnp.maximum(x.std(axis=(1, 2, 3), keepdims=True), 1.0 / jnp.sqrt(count))
    return (x - mean) / std
  raise ValueError(f"unknown dataset.normalization {mode!r}; use one of {', '.join(MODES)}")
