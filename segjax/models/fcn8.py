"""FCN8 and its depthwise-separable variant FastFCN8 (the Keras FCN8 seed).

VGG16 encoder (blocks of 2, 2, 3, 3, 3 convolutions, 64..512 channels; each
convolution with bias, then BatchNorm when `batch_norm`, then ReLU; a 2x2
max-pool closes each block), `fc6` (7x7, 4096) and `fc7` (1x1, 4096) as
convolutions with dropout, 1x1 score layers on fc7, pool4 and pool3, two 4x4
stride-2 transposed convolutions with additive fusion, and a 16x16 stride-8
transposed convolution back to the input size (FCN8 of Long et al.; the seed
uses nearest-neighbour x8 upsampling there). With `conv_type="ds"` every
convolution (encoder, fc6, fc7, score layers) is depthwise-separable: a
depthwise KxK without bias, then a pointwise 1x1 with bias (Keras
`SeparableConv2D`); the transposed convolutions stay ordinary, as in the seed.

Trainable parameters for 3 input channels and 21 classes, at full width:

  conv_type="conv": 134,498,207
  conv_type="ds":    20,826,426

The seed's README says the separable version cuts "memory usage from 124M to
20M" (parameters). The separable count agrees; the ordinary one is 134.5M, not
124M: fc6 alone holds 7*7*512*4096 + 4096 = 102,764,544 parameters, fc7
16,781,312 and the VGG16 convolutions 14,714,688. The number of classes hardly
matters (the score and upsampling layers hold 0.2M at 21 classes).

The convolution biases ahead of a BatchNorm are kept because the seed has them;
in training mode BatchNorm cancels them, so they receive zero gradient there.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from segjax.models import layers, vgg
from segjax.models.registry import register


def bilinear_init(key, shape, dtype=jnp.float32):
  """Bilinear-interpolation kernel (K, K, C, C) for a transposed convolution.

  Each output channel interpolates its own input channel (zero across channels),
  as the upsampling filters of FCN (`upsample_filt`).
  """
  del key
  kh, kw, cin, cout = shape
  if kh != kw or cin != cout:
    raise ValueError(f"bilinear initialisation needs a square kernel with as many input as "
                     f"output channels; got kernel shape {shape}")
  factor = (kh + 1) // 2
  center = factor - 1 if kh % 2 == 1 else factor - 0.5
  taps = 1 - np.abs(np.arange(kh) - center) / factor
  kernel = np.zeros(shape, np.float32)
  kernel[:, :, np.arange(cin), np.arange(cin)] = np.outer(taps, taps)[:, :, None]
  return jnp.asarray(kernel, dtype)


@register("fcn8")
class FCN8(nn.Module):
  """Input (N, H, W, C) with H, W divisible by 32; output logits (N, H, W, num_classes)."""
  num_classes: int
  conv_type: str = "conv"
  batch_norm: bool = True
  dropout_rate: float = 0.5
  bilinear_init: bool = True
  bn_momentum: float = layers.KERAS_BN_MOMENTUM
  width_multiplier: float = 1.0
  dtype: Any = jnp.float32

  @property
  def imagenet_encoder(self) -> str | None:
    """Keras Applications encoder whose ImageNet weights fit (`pretrained.py`)."""
    return "vgg16" if self.conv_type == "conv" else None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    layers.check_divisible(x, 32, "fcn8")
    fc_features = max(1, int(4096 * self.width_multiplier))
    he_normal = nn.initializers.he_normal()
    upsample_init = bilinear_init if self.bilinear_init else nn.initializers.glorot_uniform()
    upsample = lambda kernel, stride, name: layers.ConvTranspose(
        self.num_classes, (kernel, kernel), (stride, stride), use_bias=False,
        dtype=self.dtype, kernel_init=upsample_init, name=name)

    _, _, pool3, pool4, pool5 = vgg.VGG16Encoder(
        self.width_multiplier, self.conv_type, self.batch_norm, self.dtype,
        self.bn_momentum, name="encoder")(x.astype(self.dtype), train)
    h = pool5
    for name, kernel in (("fc6", 7), ("fc7", 1)):
      h = vgg.conv(self.conv_type, fc_features, kernel, self.dtype, name)(h)
      h = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(h))

    score = lambda name: vgg.conv(self.conv_type, self.num_classes, 1, self.dtype, name,
                                  kernel_init=he_normal)
    h = upsample(4, 2, "upscore2")(score("score_fr")(h))
    h = upsample(4, 2, "upscore_pool4")(h + score("score_pool4")(pool4))
    h = upsample(16, 8, "upscore8")(h + score("score_pool3")(pool3))
    return h.astype(jnp.float32)
