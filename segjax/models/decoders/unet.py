"""SMP's UnetDecoder (segmentation_models_pytorch 0.6), without center block or attention.

From the stride-32 features up, block i resizes its input to the next finer scale
(nearest neighbour), concatenates the encoder features of that scale after it, and
applies two 3x3 convolutions, each followed by BatchNorm (the convolution then has no
bias) and ReLU. Five blocks of `decoder_channels` reach strides 16, 8, 4, 2 and 1; the
last has no encoder features to join (SMP's input "feature" at stride 1 is the image,
which the decoder only uses for its size).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models.decoders import blocks, resize

DEFAULT_CHANNELS = (256, 128, 64, 32, 16)


class UnetDecoder(nn.Module):
  """Encoder features -> (N, H, W, decoder_channels[-1]) at the input resolution.

  `use_batchnorm=False` is SMP's `decoder_use_norm=False`: convolutions with bias,
  no normalisation.
  """
  decoder_channels: Sequence[int] = DEFAULT_CHANNELS
  use_batchnorm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array], train: bool = False,
               output_size: tuple[int, int] | None = None) -> jax.Array:
    """features: 5 NHWC maps at strides 2, 4, 8, 16, 32; output_size: (H, W) of the
    last block, by default twice the stride-2 size."""
    if len(features) != 5 or len(self.decoder_channels) != 5:
      raise ValueError(f"UnetDecoder takes 5 encoder features and 5 decoder_channels; got "
                       f"{len(features)} features and decoder_channels="
                       f"{tuple(self.decoder_channels)}")
    if output_size is None:
      output_size = (2 * features[0].shape[1], 2 * features[0].shape[2])
    skips = list(reversed(features[:-1])) + [None]
    targets = [skip.shape[1:3] if skip is not None else tuple(output_size) for skip in skips]
    x = features[-1].astype(self.dtype)
    for index, (channels, skip, size) in enumerate(zip(self.decoder_channels, skips,
                                                       targets)):
      x = resize.nearest(x, size)
      if skip is not None:
        x = jnp.concatenate([x, skip.astype(self.dtype)], axis=-1)
      for conv in ("conv1", "conv2"):
        name = f"blocks_{index}_{conv}"
        x = blocks.conv(x, channels, 3, f"{name}_0", self.dtype,
                        use_bias=not self.use_batchnorm)
        if self.use_batchnorm:
          x = blocks.batch_norm(x, train, f"{name}_1", self.dtype)
        x = nn.relu(x)
    return x
