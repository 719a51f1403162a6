"""Convolutional autoencoder with tied weights and skip links (the LFW part-labels seed).

Input: per-image standardisation (`tf.image.per_image_standardization`). Encoder:
`num_modules` modules `conv_<m>_1` (7x7 stride 2), `conv_<m>_2` (7x7 stride 1),
2x2 max-pool, 64 channels. Each convolution has no bias of its own and is followed
by BatchNorm without scale (TF `contrib.layers.batch_norm` defaults: offset only),
then an added bias, then leaky ReLU (leak 0.2). Decoder, the mirror image: each
max-pool is undone by 2x2 nearest-neighbour upsampling, each convolution by a
transposed convolution (`deconv_<m>_<i>`) that reuses the encoder's kernel
(TF `conv2d_transpose` with the same filter, i.e. the gradient of the
convolution) with its own BatchNorm offset and bias, then leaky ReLU. Skip links:
the outputs of the first `num_modules - 1` max-pools are added to the decoder's
tensor of the same shape, just before its upsampling.

Binary by design: `num_classes` (the model's outputs) is 1 (a sigmoid logit, the
seed's) or 2. The logits have `num_classes` channels whatever the input's: when
the input has as many channels (the seed's grayscale faces, one output), the last
transposed convolution reuses the first kernel, as in the seed; otherwise it has a
kernel of its own, shaped (k, k, num_classes, features). The logits come after
the last BatchNorm and leaky ReLU, as in the seed; `normalize_output=False`
leaves those two out of the last layer, so the logits are free to grow. Total stride 4**num_modules (64 by default). 1,008,066 trainable
parameters for 1 input channel.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import convolution, layers
from segjax.models.registry import register


def per_image_standardization(x: jax.Array) -> jax.Array:
  """(x - mean) / max(std, 1 / sqrt(H * W * C)) per image, as TensorFlow's. (N, H, W, C) float."""
  axes = tuple(range(1, x.ndim))
  mean = jnp.mean(x, axis=axes, keepdims=True)
  std = jnp.std(x, axis=axes, keepdims=True)
  count = x.shape[1] * x.shape[2] * x.shape[3]
  return (x - mean) / jnp.maximum(std, 1.0 / jnp.sqrt(count))


class _ConvUnit(nn.Module):
  """A convolution (or, given the kernel to reuse, its transpose), then BatchNorm with
  offset only, an added bias and leaky ReLU. Returns the output and the kernel."""
  features: int
  kernel_size: int
  stride: int
  leak: float
  bn_momentum: float
  dtype: Any
  normalize: bool = True               # False: the added bias only (output logits).
  transpose: bool = False              # A transposed convolution with its own kernel.

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, tied_kernel: jax.Array | None = None):
    shape = (self.kernel_size, self.kernel_size)
    strides = (self.stride, self.stride)
    if tied_kernel is None and self.transpose:  # Kernel laid out as the convolution's.
      tied_kernel = self.param("kernel", nn.initializers.glorot_uniform(),
                               shape + (self.features, x.shape[-1]))
    if tied_kernel is None:
      kernel = self.param("kernel", nn.initializers.glorot_uniform(),
                          shape + (x.shape[-1], self.features))
      x = convolution.conv_general_dilated(x, kernel.astype(self.dtype), strides, "SAME",
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
    else:
      kernel = tied_kernel
      x = layers.ConvTranspose(self.features, shape, strides, use_bias=False,
                               transpose_kernel=True, dtype=self.dtype)(x, kernel)
    if self.normalize:
      x = nn.BatchNorm(use_running_average=not train, use_scale=False, momentum=self.bn_momentum,
                       epsilon=1e-3, dtype=self.dtype, name="bn")(x)
    x = x + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
    return (nn.leaky_relu(x, self.leak) if self.normalize else x), kernel


@register("conv_autoencoder")
class ConvAutoencoder(nn.Module):
  """Input (N, H, W, C) with H, W divisible by 4**num_modules; output (N, H, W,
  num_classes) logits."""
  num_classes: int
  features: int = 64
  kernel_size: int = 7
  num_modules: int = 3
  skip_connections: bool = True
  leak: float = 0.2
  bn_momentum: float = 0.999           # TF contrib batch_norm's decay, the seed's.
  # False: the last transposed convolution plus its bias are the logits (no
  # BatchNorm, no leaky ReLU), so the sigmoid's input is not held near unit scale.
  normalize_output: bool = True
  width_multiplier: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.num_classes not in (1, 2):
      raise ValueError(f"conv_autoencoder is binary by design (one sigmoid output per input "
                       f"channel); model num_classes must be 1 or 2, got {self.num_classes}")
    layers.check_divisible(x, 4 ** self.num_modules, "conv_autoencoder")
    features = max(1, int(self.features * self.width_multiplier))
    unit = lambda features, stride, name, normalize=True, transpose=False: _ConvUnit(
        features, self.kernel_size, stride, self.leak, self.bn_momentum, self.dtype, normalize,
        transpose, name=name)
    tied_output = x.shape[-1] == self.num_classes
    x = per_image_standardization(x.astype(jnp.float32)).astype(self.dtype)

    strides = {1: 2, 2: 1}  # Of the first and second convolution of a module.

    # Encoder: keep each convolution's kernel and each pool's output.
    kernels, pools = {}, []
    for module in range(1, self.num_modules + 1):
      for index in (1, 2):
        name = f"conv_{module}_{index}"
        x, kernels[name] = unit(features, strides[index], name)(x, train)
      x = layers.max_pool(x, (2, 2))
      pools.append(x)

    # Decoder: the mirror image; the transposed convolutions reuse the encoder kernels.
    for module in range(self.num_modules, 0, -1):
      if self.skip_connections and module < self.num_modules:
        x = x + pools[module - 1]
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
      for index in (2, 1):
        name = f"conv_{module}_{index}"
        kernel = kernels[name]
        last = module == 1 and index == 1
        normalize = self.normalize_output or not last
        if last and not tied_output:  # num_classes logits from any number of input channels.
          x, _ = unit(self.num_classes, strides[index], f"de{name}", normalize,
                      transpose=True)(x, train)
        else:
          x, _ = unit(kernel.shape[2], strides[index], f"de{name}", normalize)(x, train, kernel)
    return x.astype(jnp.float32)
