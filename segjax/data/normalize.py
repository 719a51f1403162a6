"""Image normalisation, on the device (batches travel as uint8).

`dataset.normalization`:
  ""           automatic (default): what `model.pretrained` weights expect (below),
               else "unit".
  "unit"       x / 127.5 - 1, values in [-1, 1] (Keras' "tf" mode: MobileNetV2).
  "imagenet"   (x / 255 - mean) / std with the ImageNet statistics (Keras' "torch"
               mode: DenseNet); grayscale uses their average.
  "caffe"      RGB -> BGR, then x - mean in 0..255 with the ImageNet BGR means
               (Keras' "caffe" mode: VGG16); grayscale uses their average.
  "per_image"  each image to zero mean and unit variance over its pixels and
               channels (as tf.image.per_image_standardization).
With `model.pretrained=imagenet` the encoder's weights fix the mode
(`PRETRAINED_MODES`); an explicit other mode is an error naming the one they need.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # Keras imagenet_utils, "caffe" mode.
MODES = ("unit", "imagenet", "caffe", "per_image")
# Keras Applications preprocess_input of each ImageNet encoder (segjax.models.pretrained).
PRETRAINED_MODES = {"vgg16": "caffe", "mobilenetv2": "unit", "densenet121": "imagenet",
                    "densenet169": "imagenet", "densenet201": "imagenet"}


def mode_for(config, model) -> str:
  """The normalisation of a run: `dataset.normalization`, or when empty the one the
  pretrained encoder expects ("unit" without one); a conflict is a ValueError."""
  mode = config.dataset.normalization
  encoder = getattr(model, "imagenet_encoder", None) if config.model.pretrained else None
  # Keras encoders by name; the PyTorch-checkpoint encoders' models state their own.
  needed = PRETRAINED_MODES.get(encoder) or (
      getattr(model, "imagenet_normalization", None) if config.model.pretrained else None)
  if needed is None:
    return mode or "unit"
  if mode and mode != needed:
    raise ValueError(
        f"dataset.normalization={mode!r}, but the {config.model.pretrained} weights of "
        f"{encoder} (model.pretrained) expect {needed!r} input: set "
        f"dataset.normalization={needed!r} or leave it empty ('') to get it")
  return needed


def normalize_images(images: jax.Array, mode: str = "unit") -> jax.Array:
  """uint8 (N, H, W, C) -> float32 (N, H, W, C)."""
  x = images.astype(jnp.float32)
  channels = x.shape[-1]
  if mode == "unit":
    return x / 127.5 - 1.0
  if mode == "imagenet":
    mean, std = jnp.asarray(IMAGENET_MEAN), jnp.asarray(IMAGENET_STD)
    if channels != 3:
      mean, std = jnp.full((channels,), mean.mean()), jnp.full((channels,), std.mean())
    return (x / 255.0 - mean) / std
  if mode == "caffe":
    if channels != 3:
      return x - sum(CAFFE_BGR_MEAN) / 3
    return x[..., ::-1] - jnp.asarray(CAFFE_BGR_MEAN)
  if mode == "per_image":
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    count = x.shape[1] * x.shape[2] * x.shape[3]
    std = jnp.maximum(x.std(axis=(1, 2, 3), keepdims=True), 1.0 / jnp.sqrt(count))
    return (x - mean) / std
  raise ValueError(f"unknown dataset.normalization {mode!r}; use one of {', '.join(MODES)} "
                   f"or '' (automatic)")
