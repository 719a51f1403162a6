"""MobileNetV2 U-Net of the Keras seed (the TensorFlow segmentation tutorial's model).

Encoder: MobileNetV2 (alpha = `width_multiplier`, 1.0 for the ImageNet weights),
tapped at `block_1_expand_relu`, `block_3_expand_relu`, `block_6_expand_relu`,
`block_13_expand_relu` (strides 2, 4, 8, 16) and `block_16_project` (stride 32,
before its BatchNorm, so `block_16_project_BN` and the layers after it are not part
of the model). Decoder: four pix2pix upsample blocks (transposed convolution
stride 2 without bias, BatchNorm, ReLU) of 512, 256, 128 and 64 channels, each
followed by concatenation with the next finer tap, and a last 3x3 stride-2
transposed convolution (with bias) to `num_classes` at the input resolution.

`upsample_kernel` is 4 (pix2pix's own upsample size); the seed's tutorial code
passes 3. Trainable parameters for 3 input channels and 3 classes at full width:
10,091,235 with kernel 4; 6,471,395 with kernel 3 (6,504,227 with the BatchNorm
statistics: the total the TensorFlow tutorial reports).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import layers
from segjax.models.mobilenetv2 import MOBILENETV2_BN_MOMENTUM, MobileNetV2Encoder
from segjax.models.registry import register

TAPS = ("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu",
        "block_13_expand_relu", "block_16_project")
DECODER_WIDTHS = (512, 256, 128, 64)


@register("mobilenetv2_unet")
class MobileNetV2UNet(nn.Module):
  """Input (N, H, W, C) with H, W divisible by 32; output logits (N, H, W, num_classes)."""
  num_classes: int
  upsample_kernel: int = 4
  width_multiplier: float = 1.0
  dtype: Any = jnp.float32
  # BatchNorm momentum of encoder and decoder; None: Keras' (0.999 in MobileNetV2,
  # 0.99 in the pix2pix decoder). 0.9 suits runs of a few hundred steps.
  bn_momentum: float | None = None
  imagenet_encoder = "mobilenetv2"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    layers.check_divisible(x, 32, "mobilenetv2_unet")
    encoder_momentum, decoder_momentum = (
        (MOBILENETV2_BN_MOMENTUM, layers.KERAS_BN_MOMENTUM) if self.bn_momentum is None
        else (self.bn_momentum, self.bn_momentum))
    *skips, x = MobileNetV2Encoder(TAPS, self.width_multiplier, self.dtype,
                                   bn_momentum=encoder_momentum,
                                   name="encoder")(x.astype(self.dtype), train)
    pix2pix_init = nn.initializers.normal(0.02)
    for index, (width, skip) in enumerate(zip(DECODER_WIDTHS, reversed(skips)), start=1):
      x = layers.ConvTranspose(max(1, int(width * self.width_multiplier)),
                               (self.upsample_kernel,) * 2, (2, 2), use_bias=False,
                               dtype=self.dtype, kernel_init=pix2pix_init,
                               name=f"up{index}_conv")(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=decoder_momentum,
                       epsilon=1e-3, dtype=self.dtype, name=f"up{index}_bn")(x)
      x = jnp.concatenate([nn.relu(x), skip], axis=-1)
    x = layers.ConvTranspose(self.num_classes, (3, 3), (2, 2), dtype=self.dtype,
                             name="logits")(x)
    return x.astype(jnp.float32)
