"""U-Net (Ronneberger et al., 2015), with 'SAME' padding so the output keeps the input size.

Contracting path: `depth` levels of two 3x3 convolutions with ReLU (64, 128, 256,
512 channels) each followed by a 2x2 max-pool; bottom: two 3x3 convolutions with
1024 channels. Expanding path: per level a 2x2 stride-2 transposed convolution
halving the channels, concatenation with the contracting path's features, two
3x3 convolutions with ReLU. A 1x1 convolution gives the logits. No BatchNorm, as
in the paper. 31,031,810 trainable parameters for 3 input channels and 2 classes.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import convolution, layers
from segjax.models.registry import register


@register("unet")
class UNet(nn.Module):
  """Input (N, H, W, C) with H, W divisible by 2**depth; output logits (N, H, W, num_classes)."""
  num_classes: int
  depth: int = 4
  base_width: int = 64
  width_multiplier: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    layers.check_divisible(x, 2 ** self.depth, "unet")
    he_normal = nn.initializers.he_normal()  # The paper's sqrt(2 / fan_in) Gaussian.

    def double_conv(x, features, name):
      for index in (1, 2):
        x = nn.relu(convolution.Conv(features, (3, 3), padding="SAME", dtype=self.dtype,
                                     kernel_init=he_normal, name=f"{name}_conv{index}")(x))
      return x

    widths = [max(1, int(self.base_width * 2 ** level * self.width_multiplier))
              for level in range(self.depth + 1)]
    x = x.astype(self.dtype)
    skips = []
    for level in range(self.depth):
      x = double_conv(x, widths[level], f"down{level + 1}")
      skips.append(x)
      x = layers.max_pool(x, (2, 2))
    x = double_conv(x, widths[self.depth], "bottom")
    for level in reversed(range(self.depth)):
      x = layers.ConvTranspose(widths[level], (2, 2), (2, 2), dtype=self.dtype,
                               kernel_init=he_normal, name=f"up{level + 1}_transpose")(x)
      x = double_conv(jnp.concatenate([skips[level], x], axis=-1), widths[level],
                      f"up{level + 1}")
    x = convolution.Conv(self.num_classes, (1, 1), dtype=self.dtype, name="logits")(x)
    return x.astype(jnp.float32)
