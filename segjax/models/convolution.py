"""`lax.conv_general_dilated` with a weight gradient XLA:CPU runs faster.

XLA computes the weight gradient of a convolution as another convolution whose
window is the whole activation and whose contraction runs over the batch. On
CPU, jaxlib 0.10 hands every convolution with more than 16 input or output
features to YNNPACK, and the rest to its Eigen kernel. For the whole-image
windows of large stride-1 layers Eigen's kernel is often much faster: 183 ->
69 ms for a 64-channel 128x128 layer at batch 8, 426 -> 169 ms for a 128-channel
one at batch 4 (`experiments/performance.md`). YNNPACK stays faster for the
forward pass and the input gradient; for smaller and strided layers Eigen did
not gain consistently.

`conv_general_dilated` here has the same forward pass and input gradient as
`lax.conv_general_dilated`. Where the convolution has stride 1, its output
(hence its output gradient) at least `MIN_SLICED_GRADIENT_BYTES`, the batch at
most `EIGEN_MAX_FEATURES` images and the model is traced for the CPU
(`model_ops.formulation("conv_weight_gradient")`), its custom VJP computes the
weight gradient in slices of at most `EIGEN_MAX_FEATURES` output channels,
which XLA then runs with Eigen. (Larger batches are left alone: slicing a
batch that is split over devices would move images between them.) The values
agree with XLA's own gradient up to float summation order. Smaller outputs and
the layouts or options this does not handle get XLA's gradient unchanged, and
on other backends the convolution is `lax.conv_general_dilated` itself, with
no custom VJP in the graph.

`Conv` is `flax.linen.Conv` with this convolution: same parameters, same names.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from segjax.runtime import model_ops

# XLA:CPU sends a convolution to YNNPACK unless both its input and output
# feature counts are at most this (xla/backends/cpu/ynn_support.cc). For the
# weight gradient those are the images and the output channels of a slice.
EIGEN_MAX_FEATURES = 16
# Output size from which the sliced weight gradient is used. On the benchmark
# machine (32 MiB of L3 cache) YNNPACK's weight gradient ran at 45 to 53
# GFLOP/s for the stride-1 layers with outputs of 32 MiB and more, and Eigen's
# sliced one was 1.0x to 2.6x faster; for outputs of 8 to 16 MiB YNNPACK ran at
# 92 to 178 GFLOP/s and the sliced one was 0.60x to 1.12x as fast
# (experiments/benchmarks/weight_grad_ops.log).
MIN_SLICED_GRADIENT_BYTES = 32 * 2**20

_CHANNELS_LAST = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated`, same arguments and result; see the module docstring."""
  options = dict(window_strides=window_strides, padding=padding, lhs_dilation=lhs_dilation,
                 rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                 feature_group_count=feature_group_count, batch_group_count=batch_group_count,
                 precision=precision, preferred_element_type=preferred_element_type)
  conv = functools.partial(lax.conv_general_dilated, **options)
  if not _slices_weight_gradient(lhs, rhs, conv, **options):
    return conv(lhs, rhs)
  return _conv_sliced_weight_gradient(conv, lhs, rhs)


def _slices_weight_gradient(lhs, rhs, conv, *, window_strides, lhs_dilation, rhs_dilation,
                            dimension_numbers, feature_group_count, batch_group_count,
                            preferred_element_type, **unused) -> bool:
  del unused  # Padding and precision do not change the choice.
  if model_ops.formulation("conv_weight_gradient") != "sliced":
    return False
  if lhs.ndim != 4 or rhs.ndim != 4:
    return False
  if not all(isinstance(d, int) for d in lhs.shape):
    return False  # Symbolic sizes (an export): nothing to choose by, and inference has no gradient.
  if lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != _CHANNELS_LAST:
    return False
  if feature_group_count != 1 or batch_group_count != 1 or preferred_element_type is not None:
    return False
  # Strided (e.g. 256x256 -> 128x128 at batch 4: 107 -> 139 ms) or dilated: no gain.
  if any(s != 1 for s in window_strides):
    return False
  for dilation in (lhs_dilation, rhs_dilation):
    if dilation is not None and any(d != 1 for d in dilation):
      return False
  if lhs.dtype != jnp.float32 or rhs.dtype != jnp.float32:
    return False  # XLA:CPU's YNNPACK path takes float32 convolutions only.
  if lhs.shape[0] > EIGEN_MAX_FEATURES or rhs.shape[3] <= EIGEN_MAX_FEATURES:
    return False  # Too many images to slice by channel alone, or already one Eigen convolution.
  out = jax.eval_shape(conv, lhs, rhs)
  return out.size * out.dtype.itemsize >= MIN_SLICED_GRADIENT_BYTES


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _conv_sliced_weight_gradient(conv, lhs, rhs):
  return conv(lhs, rhs)


def _forward(conv, lhs, rhs):
  return conv(lhs, rhs), (lhs, rhs)


def _backward(conv, residuals, grad):
  lhs, rhs = residuals
  lhs_grad = jax.vjp(lambda x: conv(x, rhs), lhs)[1](grad)[0]
  return lhs_grad, _sliced_kernel_gradient(conv, lhs, rhs, grad)


_conv_sliced_weight_gradient.defvjp(_forward, _backward)


def _kernel_gradient(conv, lhs, rhs, grad):
  return jax.vjp(lambda kernel: conv(lhs, kernel), rhs)[1](grad)[0]


def _sliced_kernel_gradient(conv, lhs, rhs, grad):
  """The kernel gradient, `EIGEN_MAX_FEATURES` output channels at a time."""
  slices = [slice(first, first + EIGEN_MAX_FEATURES)
            for first in range(0, rhs.shape[3], EIGEN_MAX_FEATURES)]
  return jnp.concatenate([_kernel_gradient(conv, lhs, rhs[..., channels], grad[..., channels])
                          for channels in slices], axis=3)


Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
