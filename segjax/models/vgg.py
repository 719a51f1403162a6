"""VGG16 feature extractor with the Keras Applications layer names.

Layers are named as in `keras.applications.VGG16` (`block1_conv1` ...
`block5_conv3`), so ImageNet weights load by name (`segjax.models.pretrained`)
and freezing patterns read naturally (`encoder/block1_conv1/kernel`).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import convolution, layers

# (channels, convolutions) per block; a 2x2 max-pool closes each block.
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
CONV_TYPES = ("conv", "ds")


class SeparableConv(nn.Module):
  """Keras `SeparableConv2D` with depth multiplier 1.

  Depthwise KxK convolution without bias (`depthwise/kernel`, shape (K, K, 1, C_in)),
  then a pointwise 1x1 convolution with bias (`pointwise/kernel`, `pointwise/bias`).
  """
  features: int
  kernel_size: Sequence[int] = (3, 3)
  dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.glorot_uniform()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = convolution.Conv(x.shape[-1], tuple(self.kernel_size), padding="SAME",
                         feature_group_count=x.shape[-1], use_bias=False, dtype=self.dtype,
                         kernel_init=self.kernel_init, name="depthwise")(x)
    return convolution.Conv(self.features, (1, 1), dtype=self.dtype, kernel_init=self.kernel_init,
                            name="pointwise")(x)


def conv(conv_type: str, features: int, kernel_size: int, dtype: Any, name: str,
         kernel_init=nn.initializers.glorot_uniform()) -> nn.Module:
  """A 'SAME' convolution with bias: ordinary (`conv`) or depthwise-separable (`ds`)."""
  if conv_type == "conv":
    return convolution.Conv(features, (kernel_size, kernel_size), padding="SAME", dtype=dtype,
                            kernel_init=kernel_init, name=name)
  if conv_type == "ds":
    return SeparableConv(features, (kernel_size, kernel_size), dtype=dtype,
                         kernel_init=kernel_init, name=name)
  raise ValueError(f"unknown conv_type {conv_type!r} (config key model.conv_type); "
                   f"expected one of {CONV_TYPES}")


class VGG16Encoder(nn.Module):
  """VGG16 without its classifier: 13 3x3 convolutions with ReLU, five 2x2 max-pools.

  `batch_norm` adds a BatchNorm (`<conv name>_bn`) between each convolution and its
  ReLU (the FCN8 seed's layout); `conv_type="ds"` makes each convolution
  depthwise-separable.

  Returns the five pooling outputs `block1_pool` ... `block5_pool` (strides 2..32),
  each (N, H / 2**k, W / 2**k, C_k) in `dtype`.
  """
  width_multiplier: float = 1.0
  conv_type: str = "conv"
  batch_norm: bool = False
  dtype: Any = jnp.float32
  bn_momentum: float = layers.KERAS_BN_MOMENTUM

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    pools = []
    for block, (channels, num_convs) in enumerate(VGG16_BLOCKS, start=1):
      features = max(1, int(channels * self.width_multiplier))
      for index in range(1, num_convs + 1):
        name = f"block{block}_conv{index}"
        x = conv(self.conv_type, features, 3, self.dtype, name)(x)
        if self.batch_norm:
          x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                           epsilon=1e-3, dtype=self.dtype, name=f"{name}_bn")(x)
        x = nn.relu(x)
      x = layers.max_pool(x, (2, 2))
      pools.append(x)
    return pools
