"""Fully convolutional DenseNet of the Keras seed (after Jegou et al., "The One
Hundred Layers Tiramisu", on a Keras DenseNet backbone).

Encoder: DenseNet-121/169/201 (`backbone`), the outputs of its four dense blocks
(strides 4, 8, 16, 32) kept as skips. Optional bottleneck: a dense block of
`bottleneck_blocks` layers on the stride-32 features. Decoder, three times
(i = 1, 2, 3): transition up (3x3 stride-2 transposed convolution with bias to
half the channels of the next finer skip), concatenation with that skip, and a
dense block `upsample<i>` of as many layers as encoder block 5 - i (growth 32;
as in the seed, the block keeps its input, so channels accumulate). Then a 3x3
stride-4 transposed convolution to 64 channels and a 1x1 convolution to
`num_classes` (logits; the seed applies the softmax).

Trainable parameters at full width for 3 input channels and 2 classes, without
bottleneck: densenet121 28,644,162; densenet169 50,360,258; densenet201 72,241,346.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import convolution, densenet, layers
from segjax.models.registry import register


@register("fc_densenet")
class FCDenseNet(nn.Module):
  """Input (N, H, W, C) with H, W divisible by 32; output logits (N, H, W, num_classes).

  Attributes:
    backbone: densenet121, densenet169 or densenet201.
    blocks: four dense-block lengths that replace the backbone's (a DenseNet of
      custom depth, without ImageNet weights); empty: the backbone's.
    use_bottleneck, bottleneck_blocks: a dense block of that many layers between
      encoder and decoder.
  """
  num_classes: int
  backbone: str = "densenet201"
  blocks: Sequence[int] = ()
  use_bottleneck: bool = False
  bottleneck_blocks: int = 32
  width_multiplier: float = 1.0
  dtype: Any = jnp.float32
  bn_momentum: float = layers.KERAS_BN_MOMENTUM
  # Five halvings (stem, pool, three transitions); given, as tracing this deep a
  # model to find it takes tens of seconds (segjax.models.registry.total_stride).
  total_stride = 32

  @property
  def imagenet_encoder(self) -> str | None:
    """Keras Applications encoder whose ImageNet weights fit (`pretrained.py`)."""
    return None if self.blocks else self.backbone

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.backbone not in densenet.DENSENET_BLOCKS:
      raise ValueError(f"unknown backbone {self.backbone!r} (config key model.backbone); "
                       f"expected one of {sorted(densenet.DENSENET_BLOCKS)}")
    layers.check_divisible(x, 32, "fc_densenet")
    blocks = tuple(self.blocks) or densenet.DENSENET_BLOCKS[self.backbone]
    if len(blocks) != 4:
      raise ValueError(f"model.blocks must give 4 dense-block lengths; got {self.blocks}")
    growth = max(1, int(densenet.GROWTH_RATE * self.width_multiplier))
    he_uniform = nn.initializers.he_uniform()
    encoder = densenet.DenseNetEncoder(blocks, self.width_multiplier, self.dtype,
                                       self.bn_momentum, name="encoder")
    *skips, x = encoder(x.astype(self.dtype), train)
    if self.use_bottleneck:
      x = densenet.dense_block(x, self.bottleneck_blocks, growth, "bottleneck", train,
                               self.dtype, self.bn_momentum)
    for index, skip in enumerate(reversed(skips), start=1):
      x = layers.ConvTranspose(skip.shape[-1] // 2, (3, 3), (2, 2), dtype=self.dtype,
                               kernel_init=he_uniform, name=f"transition_up{index}")(x)
      x = jnp.concatenate([x, skip], axis=-1)
      x = densenet.dense_block(x, blocks[-index], growth, f"upsample{index}", train,
                               self.dtype, self.bn_momentum)
    x = layers.ConvTranspose(max(1, int(64 * self.width_multiplier)), (3, 3), (4, 4),
                             dtype=self.dtype, kernel_init=he_uniform, name="upsample_x4")(x)
    x = convolution.Conv(self.num_classes, (1, 1), dtype=self.dtype, kernel_init=he_uniform,
                         name="score")(x)
    return x.astype(jnp.float32)
