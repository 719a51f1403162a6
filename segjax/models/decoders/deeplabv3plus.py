"""SMP's DeepLabV3PlusDecoder (segmentation_models_pytorch 0.6).

ASPP on the last encoder features (stride `output_stride`, 16 or 8): five branches
concatenated, a 1x1 convolution, three 3x3 convolutions dilated by `atrous_rates`
(depthwise-separable by default) and image pooling (global average, 1x1 convolution,
broadcast back), each followed by BatchNorm and ReLU; a 1x1 projection with BatchNorm,
ReLU and dropout (0.5); then a separable 3x3 convolution, BatchNorm, ReLU. The result
is upsampled bilinearly (aligned corners) to stride 4 (x4 at output stride 16, x2 at 8)
and joined after the stride-4 encoder features projected to 48 channels (1x1, BatchNorm,
ReLU); a separable 3x3 convolution, BatchNorm and ReLU give the decoder's output. SMP
uses the same rates (12, 24, 36) at output stride 8 and 16 (it does not double them at 8).
No convolution of the decoder has a bias: each is followed by BatchNorm.

SMP does not call `initialize_decoder` for DeepLabV3+ (PyTorch's default initialisation
stays); here its convolutions get the Kaiming-uniform initialisation of the other SMP
decoders.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models.decoders import blocks, resize

HIGHRES_CHANNELS = 48  # The paper's projection of the stride-4 features.


class DeepLabV3PlusDecoder(nn.Module):
  """Encoder features -> (N, H/4, W/4, out_channels)."""
  out_channels: int = 256
  atrous_rates: Sequence[int] = (12, 24, 36)
  aspp_separable: bool = True
  aspp_dropout: float = 0.5
  dtype: Any = jnp.float32

  def _conv_bn_relu(self, x, features, name, train, *, separable=False, kernel_size=1,
                    dilation=1):
    """SMP's Sequential(conv, BatchNorm2d, ReLU) named `name`: `name_0`, `name_1`."""
    if separable:
      x = blocks.separable_conv(x, features, f"{name}_0", self.dtype, dilation=dilation,
                                use_bias=False)
    else:
      x = blocks.conv(x, features, kernel_size, f"{name}_0", self.dtype, use_bias=False,
                      dilation=dilation)
    return nn.relu(blocks.batch_norm(x, train, f"{name}_1", self.dtype))

  @nn.compact
  def __call__(self, features: Sequence[jax.Array], train: bool = False) -> jax.Array:
    """features: 5 NHWC maps at strides 2, 4, 8, 16 or 8, and output stride (16 or 8)."""
    if len(tuple(self.atrous_rates)) != 3:
      raise ValueError(f"DeepLabV3+ takes 3 atrous rates, got {tuple(self.atrous_rates)}")
    x = features[-1].astype(self.dtype)
    branches = [self._conv_bn_relu(x, self.out_channels, "aspp_0_convs_0", train)]
    for index, rate in enumerate(self.atrous_rates, start=1):
      branches.append(self._conv_bn_relu(x, self.out_channels, f"aspp_0_convs_{index}",
                                         train, separable=self.aspp_separable,
                                         kernel_size=3, dilation=rate))
    # Image pooling: SMP's ASPPPooling, Sequential(pool, conv, BatchNorm, ReLU).
    pooled = jnp.mean(x, axis=(1, 2), keepdims=True)
    pooled = blocks.conv(pooled, self.out_channels, 1, "aspp_0_convs_4_1", self.dtype,
                         use_bias=False)
    pooled = nn.relu(blocks.batch_norm(pooled, train, "aspp_0_convs_4_2", self.dtype))
    branches.append(resize.bilinear(pooled, x.shape[1:3], align_corners=False))
    x = self._conv_bn_relu(jnp.concatenate(branches, axis=-1), self.out_channels,
                           "aspp_0_project", train)
    x = nn.Dropout(self.aspp_dropout, deterministic=not train)(x)
    x = blocks.separable_conv(x, self.out_channels, "aspp_1", self.dtype, use_bias=False)
    x = nn.relu(blocks.batch_norm(x, train, "aspp_2", self.dtype))

    high_res = self._conv_bn_relu(features[1].astype(self.dtype), HIGHRES_CHANNELS,
                                  "block1", train)
    x = resize.bilinear(x, high_res.shape[1:3], align_corners=True)
    return self._conv_bn_relu(jnp.concatenate([x, high_res], axis=-1), self.out_channels,
                              "block2", train, separable=True)
