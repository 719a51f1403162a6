"""Skip-layer FCN on a frozen VGG16 of the Keras pets seed.

VGG16 encoder (Keras layer names, no BatchNorm; ImageNet weights through
`segjax.models.pretrained`). From each pooling level p in `branch_pools` (default
block3_pool, block4_pool, block5_pool: strides 8, 16, 32), one transposed
convolution `upscore_pool<p>` maps straight to `num_classes` at the input
resolution (kernel 2s, stride s, with bias); the branches are summed into the
logits. Only the branches train: `frozen_patterns` lists the parameter paths the
trainer keeps fixed (the whole encoder by default, as the seed freezes its
ImageNet VGG16; set `model.frozen_patterns=()` to train a randomly initialised
encoder too).

Parameters for 3 classes at full width: 22,775,625, of which 14,714,688 in the
(frozen) encoder and 8,060,937 in the branches.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import layers, vgg
from segjax.models.registry import register


@register("vgg16_skip_fcn")
class VGG16SkipFCN(nn.Module):
  """Input (N, H, W, C) with H, W divisible by 32; output logits (N, H, W, num_classes).

  Attributes:
    branch_pools: VGG16 pooling levels (1..5) that feed a branch.
    frozen_patterns: regular expressions over '/'-joined parameter paths
      (`encoder/block1_conv1/kernel`); the parameters whose path matches one in full
      (`re.fullmatch`) are frozen by the trainer.
  """
  num_classes: int
  branch_pools: Sequence[int] = (3, 4, 5)
  frozen_patterns: Sequence[str] = ("encoder/.*",)
  width_multiplier: float = 1.0
  dtype: Any = jnp.float32
  imagenet_encoder = "vgg16"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if not self.branch_pools or not set(self.branch_pools) <= {1, 2, 3, 4, 5}:
      raise ValueError(f"branch_pools must be pooling levels among 1..5 (config key "
                       f"model.branch_pools); got {self.branch_pools}")
    layers.check_divisible(x, 32, "vgg16_skip_fcn")
    pools = vgg.VGG16Encoder(self.width_multiplier, dtype=self.dtype,
                             name="encoder")(x.astype(self.dtype), train)
    logits = 0.
    for level in sorted(self.branch_pools):
      stride = 2 ** level
      logits = logits + layers.ConvTranspose(
          self.num_classes, (2 * stride, 2 * stride), (stride, stride), dtype=self.dtype,
          name=f"upscore_pool{level}")(pools[level - 1])
    return logits.astype(jnp.float32)
