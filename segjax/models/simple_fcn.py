"""The minimal fully convolutional network of the MNIST-over-CIFAR seed.

Four 5x5 'SAME' convolutions with bias, no pooling (stride 1, any input size):
3 -> 10 -> 12 -> 8 channels, each followed by dropout (keep probability 0.7 in
the seed, `dropout_rate=0.3` here) and ReLU, then a last 5x5 convolution to the
logits. The seed predicts one foreground channel through a sigmoid: that is
`num_classes=1`; any other value gives that many softmax logits. 6,381
trainable parameters for 3 input channels and 1 class.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import convolution
from segjax.models.registry import register


@register("simple_fcn")
class SimpleFCN(nn.Module):
  """Input (N, H, W, C), any H and W; output logits (N, H, W, num_classes)."""
  num_classes: int
  features: Sequence[int] = (10, 12, 8)
  kernel_size: int = 5
  dropout_rate: float = 0.3
  width_multiplier: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv = lambda features, name: convolution.Conv(
        features, (self.kernel_size,) * 2, padding="SAME", dtype=self.dtype, name=name)
    x = x.astype(self.dtype)
    for index, features in enumerate(self.features, start=1):
      x = conv(max(1, int(features * self.width_multiplier)), f"conv{index}")(x)
      x = nn.relu(nn.Dropout(self.dropout_rate, deterministic=not train)(x))
    x = conv(self.num_classes, "logits")(x)
    return x.astype(jnp.float32)
