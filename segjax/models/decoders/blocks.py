"""Layers of the SMP decoders, with PyTorch's numerics and SMP's initialisation.

Module names follow SMP's state-dict names with the dots replaced by underscores
(`decoder.blocks.0.conv1.0.weight` is the kernel of `decoder/blocks_0_conv1_0`), so
`smp_weights.py` converts SMP weights by one rule.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

# PyTorch's BatchNorm2d: momentum 0.1 for the new batch (flax: 0.9 for the old
# average), eps 1e-5. GroupNorm's eps is also 1e-5.
TORCH_BN_MOMENTUM = 0.9
TORCH_NORM_EPSILON = 1e-5
# SMP's `initialize_decoder`: kaiming_uniform_(mode="fan_in", nonlinearity="relu").
DECODER_INIT = nn.initializers.he_uniform()


def conv(x: jax.Array, features: int, kernel_size: int, name: str, dtype: Any, *,
         use_bias: bool = True, dilation: int = 1, groups: int = 1,
         kernel_init=DECODER_INIT) -> jax.Array:
  """`nn.Conv2d(..., padding=dilation * (kernel_size // 2), dilation, groups)`: stride 1,
  output the size of the input."""
  pad = dilation * (kernel_size // 2)
  return nn.Conv(features, (kernel_size, kernel_size), padding=((pad, pad), (pad, pad)),
                 kernel_dilation=dilation, feature_group_count=groups, use_bias=use_bias,
                 dtype=dtype, kernel_init=kernel_init, name=name)(x)


def batch_norm(x: jax.Array, train: bool, name: str, dtype: Any) -> jax.Array:
  return nn.BatchNorm(use_running_average=not train, momentum=TORCH_BN_MOMENTUM,
                      epsilon=TORCH_NORM_EPSILON, dtype=dtype, name=name)(x)


def separable_conv(x: jax.Array, features: int, name: str, dtype: Any, *, dilation: int = 1,
                   use_bias: bool = True) -> jax.Array:
  """SMP's SeparableConv2d, kernel 3: depthwise (`name_0`, no bias), then pointwise
  1x1 (`name_1`)."""
  x = conv(x, x.shape[-1], 3, f"{name}_0", dtype, use_bias=False, dilation=dilation,
           groups=x.shape[-1])
  return conv(x, features, 1, f"{name}_1", dtype, use_bias=use_bias)
