"""SMP's SegmentationHead: a convolution to the class logits, then bilinear upsampling."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models.decoders import blocks, resize


class SegmentationHead(nn.Module):
  """(N, h, w, C) decoder features -> float32 logits (N, h * upsampling, w * upsampling,
  num_classes).

  A `kernel_size` convolution with bias (U-Net: 3, FPN and DeepLabV3+: 1), named "0"
  as in SMP's `segmentation_head.0`, Xavier-uniform initialised (SMP's
  `initialize_head`); for `upsampling` > 1, bilinear upsampling with aligned corners.
  """
  num_classes: int
  kernel_size: int = 3
  upsampling: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = blocks.conv(x, self.num_classes, self.kernel_size, "0", self.dtype,
                    kernel_init=nn.initializers.xavier_uniform())
    x = x.astype(jnp.float32)  # Upsampled in float32: few channels, exact logits.
    if self.upsampling > 1:
      x = resize.upsample_bilinear(x, self.upsampling)
    return x
