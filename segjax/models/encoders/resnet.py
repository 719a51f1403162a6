"""ResNet-18/34/50/101 encoders with torchvision's parameter names.

torchvision's `resnet*` (v1.5: the bottleneck strides in its 3x3 convolution): `conv1`,
`bn1`, `layer1.0.conv1`, `layer1.0.bn1`, ..., `layerN.0.downsample.0/1`, BatchNorm
epsilon 1e-5 and momentum 0.1 (flax 0.9).

Features as segmentation_models_pytorch's `ResNetEncoder`: the stem after its ReLU
(before the max pool, stride 2), then the outputs of layer1 (stride 4, after the pool),
layer2, layer3, layer4. `output_stride` 16 runs layer4 with stride 1 and dilation 2,
8 also layer3 with dilation 2 and layer4 with 4; as SMP's `make_dilated`, every
convolution of such a layer gets that dilation and padding (k // 2) * dilation (also
the first block's, unlike torchvision's `replace_stride_with_dilation`). The
classifier `fc` is not part of the encoder.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models.encoders import common

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
WIDTHS = (64, 128, 256, 512)


@dataclasses.dataclass(frozen=True)
class ResNetArch:
  blocks: tuple[int, int, int, int]
  bottleneck: bool

  @property
  def expansion(self) -> int:
    return 4 if self.bottleneck else 1


ARCHS = {
    "resnet18": ResNetArch((2, 2, 2, 2), bottleneck=False),
    "resnet34": ResNetArch((3, 4, 6, 3), bottleneck=False),
    "resnet50": ResNetArch((3, 4, 6, 3), bottleneck=True),
    "resnet101": ResNetArch((3, 4, 23, 3), bottleneck=True),
}


def channels(arch: ResNetArch) -> tuple[int, ...]:
  return (64, *(w * arch.expansion for w in WIDTHS))


class Block(nn.Module):
  """torchvision's `BasicBlock` or `Bottleneck` (with `bottleneck`)."""
  width: int
  stride: int
  dilation: int
  bottleneck: bool
  downsample: bool
  frozen_batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs, train: bool = False):
    norm = lambda name: common.batch_norm(train, self.frozen_batch_norm, BN_MOMENTUM,
                                          BN_EPSILON, self.dtype, name)
    conv = lambda features, kernel, stride, name: common.conv(
        features, kernel, stride, common.dilated_padding(kernel, self.dilation),
        self.dilation, dtype=self.dtype, name=name)
    if self.bottleneck:
      x = nn.relu(norm("bn1")(conv(self.width, 1, 1, "conv1")(inputs)))
      x = nn.relu(norm("bn2")(conv(self.width, 3, self.stride, "conv2")(x)))
      x = norm("bn3")(conv(4 * self.width, 1, 1, "conv3")(x))
    else:
      x = nn.relu(norm("bn1")(conv(self.width, 3, self.stride, "conv1")(inputs)))
      x = norm("bn2")(conv(self.width, 3, 1, "conv2")(x))
    shortcut = inputs
    if self.downsample:
      shortcut = norm("downsample_1")(conv(x.shape[-1], 1, self.stride, "downsample_0")(inputs))
    return nn.relu(x + shortcut)


class ResNetEncoder(nn.Module):
  """(N, H, W, 3) -> 5 NHWC features at strides 2, 4, 8, 16, 32 (see the module doc)."""
  arch: ResNetArch
  dtype: Any = jnp.float32
  output_stride: int = 32
  frozen_batch_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, ...]:
    dilations = common.stage_dilations(self.output_stride)
    x = common.conv(64, 7, 2, [(3, 3), (3, 3)], dtype=self.dtype, name="conv1")(x)
    x = common.batch_norm(train, self.frozen_batch_norm, BN_MOMENTUM, BN_EPSILON, self.dtype,
                          "bn1")(x)
    features = [nn.relu(x)]
    x = nn.max_pool(features[0], (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    channels_in = 64
    for layer, (width, count) in enumerate(zip(WIDTHS, self.arch.blocks)):
      dilation = {2: dilations[16], 3: dilations[32]}.get(layer, 1)
      stride = 1 if layer == 0 or dilation > 1 else 2
      for b in range(count):
        # torchvision decides the downsample from the configured stride (2 from layer2 on).
        needs = b == 0 and (layer > 0 or channels_in != width * self.arch.expansion)
        x = Block(width, stride if b == 0 else 1, dilation, self.arch.bottleneck, needs,
                  self.frozen_batch_norm, self.dtype, name=f"layer{layer + 1}_{b}")(x, train)
      channels_in = width * self.arch.expansion
      features.append(x)
    return tuple(features)


def is_head(name: str) -> bool:
  return name.split(".")[0] == "fc"
