"""SegNet-style encoder-decoder of the skin-segmentation seed.

Downsampling by stride-2 convolutions (no pooling), upsampling by stride-2
transposed convolutions; every convolution is `conv -> ReLU -> BatchNorm`,
the classifier `conv (no bias) -> BatchNorm`. 11,737,156 trainable parameters
for 3 input channels and 2 classes.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import convolution, layers
from segjax.models.registry import register


@register("segnet")
class SegNet(nn.Module):
  """Input (N, H, W, C) with H, W divisible by 16; output logits (N, H, W, num_classes)."""
  num_classes: int
  widths: Sequence[int] = (64, 128, 256, 512)
  width_multiplier: float = 1.0
  # Running statistics follow the weights closely enough to evaluate a run of a
  # few hundred steps (0.99, the seed's TensorFlow default, lags behind).
  bn_momentum: float = 0.9
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    layers.check_divisible(x, 2 ** len(self.widths), "segnet")
    widths = [max(1, int(w * self.width_multiplier)) for w in self.widths]
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                epsilon=1e-3, dtype=self.dtype)
    conv = lambda features, strides=1, **kw: convolution.Conv(
        features, (3, 3), (strides, strides), padding="SAME", dtype=self.dtype,
        kernel_init=nn.initializers.glorot_uniform(), **kw)
    x = x.astype(self.dtype)
    for width in widths:
      x = norm()(nn.relu(conv(width)(x)))
      x = norm()(nn.relu(conv(width, strides=2)(x)))
    for width in reversed(widths):
      x = layers.ConvTranspose(width, (3, 3), (2, 2), dtype=self.dtype)(x)
      x = norm()(nn.relu(x))
      x = norm()(nn.relu(conv(width)(x)))
    x = norm()(conv(self.num_classes, use_bias=False)(x))
    return x.astype(jnp.float32)
