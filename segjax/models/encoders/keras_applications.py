"""The Keras Applications encoders (VGG16, MobileNetV2, DenseNet) behind the encoder
interface: 5 features at strides 2, 4, 8, 16, 32, `frozen_batch_norm`, `output_stride`.

Their layers keep the Keras names at the encoder's scope, so their ImageNet weights
load from the Keras files (`segjax.models.pretrained`). Features:
  vgg16        the five pooling outputs block1_pool ... block5_pool (64 ... 512 channels);
  mobilenetv2  expanded_conv_project_BN, block_2/5/12/16_project_BN (16, 24, 32, 96, 320),
               the stage ends segmentation_models_pytorch's mobilenet_v2 taps, with the
               last block's output for its final 1x1 convolution (not part of this network);
  densenet*    conv1_relu, then the four dense blocks' outputs.
None has a dilated form: `output_stride` is 32 (DeepLabV3+ needs another encoder).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from segjax.models import densenet, mobilenetv2, vgg

NAMES = ("vgg16", "mobilenetv2", *densenet.DENSENET_BLOCKS)
MOBILENETV2_TAPS = ("expanded_conv_project_BN", "block_2_project_BN", "block_5_project_BN",
                    "block_12_project_BN", "block_16_project_BN")


def check_output_stride(name: str, output_stride: int) -> None:
  if output_stride != 32:
    raise ValueError(f"encoder {name!r} has no dilated form: output_stride must be 32, got "
                     f"{output_stride} (DeepLabV3+ needs a ResNet or EfficientNet encoder)")


class _Interface(nn.Module):
  """The interface's fields; BatchNorm on its running statistics when frozen."""
  output_stride: int = 32
  frozen_batch_norm: bool = False

  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    return super().__call__(x, train and not self.frozen_batch_norm)


class VGG16(_Interface, vgg.VGG16Encoder):
  pass


class MobileNetV2(_Interface, mobilenetv2.MobileNetV2Encoder):
  taps: tuple = MOBILENETV2_TAPS


class DenseNet(_Interface, densenet.DenseNetEncoder):
  blocks: tuple = densenet.DENSENET_BLOCKS["densenet121"]
  stem_feature: bool = True


def module(name: str) -> tuple[type, dict]:
  """The encoder class of `name` and the fields that make it that network."""
  if name == "vgg16":
    return VGG16, {}
  if name == "mobilenetv2":
    return MobileNetV2, {}
  return DenseNet, {"blocks": densenet.DENSENET_BLOCKS[name]}
