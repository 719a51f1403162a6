"""Encoder-decoder models of segmentation_models_pytorch (SMP 0.6): U-Net, FPN, DeepLabV3+.

An encoder of `segjax.models.encoders` (submodule "encoder", so
`optimizer.freeze='("encoder/.*",)'` freezes it) gives 5 NHWC features at strides 2 to
32 (DeepLabV3+: dilated to `encoder_output_stride`); a decoder of
`segjax.models.decoders` (submodule "decoder") and SMP's segmentation head (submodule
"segmentation_head") turn them into logits at the input resolution. The decoder and
head compute what SMP's do on the same weights (`decoders.smp_weights.load` imports
them); defaults are SMP's.

Input (N, H, W, C) float, H and W divisible by `total_stride`; output float32 logits
(N, H, W, num_classes). `frozen_batch_norm` is the encoder's (its BatchNorm layers use
their running statistics in training too); the decoder's BatchNorm layers, trained from
scratch, always train.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models.decoders import (DeepLabV3PlusDecoder, FPNDecoder, SegmentationHead,
                                    UnetDecoder)
from segjax.models.registry import register


def _check_size(x: jax.Array, stride: int, model: str) -> None:
  height, width = x.shape[1:3]
  if height % stride or width % stride:
    raise ValueError(f"{model} needs an input height and width divisible by {stride}; got "
                     f"{height}x{width} (pad or resize the images, dataset.image_size)")


class _EncoderDecoder(nn.Module):
  """Shared by the three models: encoder, decoder and head, named as in SMP."""

  @property
  def imagenet_encoder(self) -> str:
    """The encoder whose ImageNet weights fit (`segjax.models.pretrained`)."""
    return self.encoder

  @property
  def imagenet_normalization(self) -> str:
    """The input normalisation the encoder's ImageNet weights were trained with."""
    from segjax.models import encoders
    return encoders.spec(self.encoder).normalization

  def decoder_and_head(self) -> tuple[nn.Module, nn.Module]:
    """This model's decoder and head, unbound (e.g. to run them on given features)."""
    raise NotImplementedError

  def _encoder_fields(self) -> dict:
    return dict(dtype=self.dtype, frozen_batch_norm=self.frozen_batch_norm)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    from segjax.models import encoders  # Imported here: decoders work without it.

    _check_size(x, self.total_stride, type(self).__name__)
    # Built unbound, then adopted as "encoder" (build's first argument is the
    # encoder's name, so it cannot pass the submodule's).
    encoder = encoders.build(self.encoder, **self._encoder_fields()).clone(
        parent=self, name="encoder")
    features = encoder(x.astype(self.dtype), train)
    decoder, head = self.decoder_and_head()
    decoder = decoder.clone(parent=self, name="decoder")
    head = head.clone(parent=self, name="segmentation_head")
    if isinstance(decoder, UnetDecoder):
      return head(decoder(features, train, output_size=x.shape[1:3]))
    return head(decoder(features, train))


@register("unet", when="encoder")
class EncoderUnet(_EncoderDecoder):
  """SMP's Unet: `decoder_channels` per block (strides 16 to 1), 3x3 head."""
  num_classes: int
  encoder: str = "resnet34"
  decoder_channels: Sequence[int] = (256, 128, 64, 32, 16)
  decoder_use_batchnorm: bool = True
  frozen_batch_norm: bool = False
  dtype: Any = jnp.float32
  total_stride = 32

  def decoder_and_head(self):
    return (UnetDecoder(tuple(self.decoder_channels), self.decoder_use_batchnorm, self.dtype,
                        parent=None),
            SegmentationHead(self.num_classes, kernel_size=3, dtype=self.dtype, parent=None))


@register("fpn")
class FPN(_EncoderDecoder):
  """SMP's FPN: decoder at stride 4, 1x1 head, bilinear upsampling x4."""
  num_classes: int
  encoder: str = "resnet34"
  decoder_pyramid_channels: int = 256
  decoder_segmentation_channels: int = 128
  decoder_merge_policy: str = "add"
  decoder_dropout: float = 0.2
  frozen_batch_norm: bool = False
  dtype: Any = jnp.float32
  total_stride = 32

  def decoder_and_head(self):
    return (FPNDecoder(self.decoder_pyramid_channels, self.decoder_segmentation_channels,
                       self.decoder_merge_policy, self.decoder_dropout, self.dtype,
                       parent=None),
            SegmentationHead(self.num_classes, kernel_size=1, upsampling=4, dtype=self.dtype,
                             parent=None))


@register("deeplabv3plus")
class DeepLabV3Plus(_EncoderDecoder):
  """SMP's DeepLabV3Plus: encoder dilated to `encoder_output_stride` (16 or 8), decoder
  at stride 4, 1x1 head, bilinear upsampling x4."""
  num_classes: int
  encoder: str = "resnet34"
  encoder_output_stride: int = 16
  decoder_channels: int = 256
  decoder_atrous_rates: Sequence[int] = (12, 24, 36)
  decoder_aspp_separable: bool = True
  decoder_aspp_dropout: float = 0.5
  frozen_batch_norm: bool = False
  dtype: Any = jnp.float32

  @property
  def total_stride(self) -> int:
    if self.encoder_output_stride not in (8, 16):
      raise ValueError(f"DeepLabV3Plus encoder_output_stride must be 8 or 16, got "
                       f"{self.encoder_output_stride}")
    return self.encoder_output_stride

  def _encoder_fields(self) -> dict:
    return dict(super()._encoder_fields(), output_stride=self.total_stride)

  def decoder_and_head(self):
    return (DeepLabV3PlusDecoder(self.decoder_channels, tuple(self.decoder_atrous_rates),
                                 self.decoder_aspp_separable, self.decoder_aspp_dropout,
                                 self.dtype, parent=None),
            SegmentationHead(self.num_classes, kernel_size=1, upsampling=4, dtype=self.dtype,
                             parent=None))
