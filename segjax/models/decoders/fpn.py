"""SMP's FPNDecoder (segmentation_models_pytorch 0.6).

A top-down pyramid on the encoder features at strides 4 to 32: `p5` is a 1x1
convolution of the stride-32 features, and each finer level `p4`, `p3`, `p2` adds a
1x1 convolution of the encoder features to the coarser level upsampled x2 (nearest).
Each level then goes through 3x3 convolution (no bias), GroupNorm(32), ReLU blocks,
one per factor 2 up to stride 4 (bilinear x2 with aligned corners after each), or one
block without upsampling for `p2`. The four stride-4 maps are summed ("add") or
concatenated ("cat"), then whole channels are dropped (Dropout2d) in training. SMP's
FPN head is a 1x1 convolution and bilinear upsampling x4.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models.decoders import blocks, resize

GROUPS = 32  # SMP's Conv3x3GNReLU: GroupNorm(32, channels).


class FPNDecoder(nn.Module):
  """Encoder features -> (N, H/4, W/4, C), C = segmentation_channels ("add") or 4 times
  that ("cat"). segmentation_channels must be a multiple of 32."""
  pyramid_channels: int = 256
  segmentation_channels: int = 128
  merge_policy: str = "add"
  dropout: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array], train: bool = False) -> jax.Array:
    """features: NHWC maps at strides ..., 4, 8, 16, 32 (the last four are used)."""
    if self.merge_policy not in ("add", "cat"):
      raise ValueError(f"FPN merge_policy must be 'add' or 'cat', got {self.merge_policy!r}")
    if self.segmentation_channels % GROUPS:
      raise ValueError(f"FPN segmentation_channels={self.segmentation_channels} is not a "
                       f"multiple of {GROUPS} (its GroupNorm has {GROUPS} groups)")
    c2, c3, c4, c5 = (f.astype(self.dtype) for f in features[-4:])
    pyramid = [blocks.conv(c5, self.pyramid_channels, 1, "p5", self.dtype)]
    for name, skip in (("p4", c4), ("p3", c3), ("p2", c2)):
      upsampled = resize.nearest(pyramid[-1], skip.shape[1:3])
      pyramid.append(upsampled + blocks.conv(skip, self.pyramid_channels, 1,
                                             f"{name}_skip_conv", self.dtype))
    outputs = []
    for index, (level, upsamples) in enumerate(zip(pyramid, (3, 2, 1, 0))):
      x = level
      for block in range(max(upsamples, 1)):
        name = f"seg_blocks_{index}_block_{block}_block"
        x = blocks.conv(x, self.segmentation_channels, 3, f"{name}_0", self.dtype,
                        use_bias=False)
        x = nn.GroupNorm(num_groups=GROUPS, epsilon=blocks.TORCH_NORM_EPSILON,
                         dtype=self.dtype, name=f"{name}_1")(x)
        x = nn.relu(x)
        if upsamples:
          x = resize.upsample_bilinear(x, 2)
      outputs.append(x)
    x = sum(outputs) if self.merge_policy == "add" else jnp.concatenate(outputs, axis=-1)
    # Dropout2d: one draw per image and channel.
    return nn.Dropout(self.dropout, broadcast_dims=(1, 2), deterministic=not train)(x)
