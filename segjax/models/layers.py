"""Layers shared by the model families.

The transposed convolution here replaces `flax.linen.ConvTranspose`: on XLA:CPU
the gradient of `lax.conv_transpose` (an input-dilated convolution) is many
times slower than that of an ordinary convolution. A strided transposed
convolution is exactly a set of `stride_h * stride_w` ordinary convolutions,
one per output phase, whose outputs interleave ("sub-pixel" decomposition).
We compute the phases in one of three ways, all with plain convolutions or
matrix products forward and backward:

- matmul: where each phase has a single tap (the kernel equals the stride, as
  in U-Net's 2x2/2 upsampling), one matrix product gives every phase.
- packed: the phases are the output channels of one stride-1 convolution,
  interleaved by a reshape (depth-to-space). Phases a kernel tap does not
  reach get zero taps, e.g. 16 taps for a 3x3 kernel at stride 2.
- overlap-add: one matrix product gives every tap's contribution of every
  input pixel, and each phase adds up shifted slices of it. No zero taps, but
  one slice-and-add per tap, so it serves small kernels only.

Otherwise the overlap-add form is used where the packed one would spend zero
taps on a kernel of at most 16 taps (SegNet's 3x3 stride-2 layers: 718 -> 322
ms forward + backward; experiments/performance.md); large kernels (the 2s x 2s
upsampling of `vgg16_skip_fcn`) stay packed, where per-tap slices would make
compilation slow.

All of this is XLA:CPU's concern: on other backends `conv_transpose` and
`max_pool` run XLA's own ops (`segjax.runtime.model_ops`).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from segjax.models import convolution
from segjax.runtime import model_ops

Dtype = Any
PaddingLike = str | Sequence[tuple[int, int]]

# Keras' BatchNormalization momentum, the default of the Keras-layout models
# (their ImageNet weights); 0.9 suits runs of a few hundred steps.
KERAS_BN_MOMENTUM = 0.99
# conv_transpose uses overlap-add for kernels of at most this many taps.
MAX_OVERLAP_ADD_TAPS = 16


def _transpose_padding(kernel_size: int, stride: int, padding) -> tuple[int, int]:
  """Padding of the input-dilated convolution that `lax.conv_transpose` runs."""
  if padding == "SAME":
    pad_len = kernel_size + stride - 2
    pad_lo = kernel_size - 1 if stride > kernel_size - 1 else int(np.ceil(pad_len / 2))
  elif padding == "VALID":
    pad_len = kernel_size + stride - 2 + max(kernel_size - stride, 0)
    pad_lo = kernel_size - 1
  else:
    pad_lo, pad_hi = padding
    return int(pad_lo), int(pad_hi)
  return pad_lo, pad_len - pad_lo


def _phase_plan(in_size: int, kernel_size: int, stride: int, pad_lo: int, pad_hi: int):
  """Plans one spatial dimension of the phase decomposition.

  Output position `stride * m + a` of the transposed convolution reads input
  `m + d` through kernel tap `t` for every `t` with `(a + t - pad_lo) % stride
  == 0`, where `d = (a + t - pad_lo) // stride`. All phases share one window of
  offsets `d_lo..d_hi`; taps a phase does not use point at a zero tap.

  Returns:
    taps: int array (window, stride), kernel tap index per (offset, phase),
      `kernel_size` where the phase has no tap (a zero).
    in_pad: (lo, hi) padding of the input (negative values crop).
    out_size: length of the transposed-convolution output.
  """
  out_size = stride * (in_size - 1) + 1 + pad_lo + pad_hi - kernel_size + 1
  if out_size <= 0:
    raise ValueError(f"transposed convolution output would be empty (input {in_size}, "
                     f"kernel {kernel_size}, stride {stride}, padding {(pad_lo, pad_hi)})")
  offsets = {}
  for a in range(stride):
    for t in range(kernel_size):
      if (a + t - pad_lo) % stride == 0:
        offsets[(a, t)] = (a + t - pad_lo) // stride
  d_lo, d_hi = min(offsets.values()), max(offsets.values())
  taps = np.full((d_hi - d_lo + 1, stride), kernel_size, np.int32)
  for (a, t), d in offsets.items():
    taps[d - d_lo, a] = t
  num_rows = -(-out_size // stride)  # Rows per phase, before cropping to out_size.
  in_pad = (-d_lo, num_rows - 1 + d_hi - (in_size - 1))
  return taps, in_pad, out_size


def conv_transpose(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                   padding: PaddingLike = "SAME", transpose_kernel: bool = False,
                   precision=None) -> jax.Array:
  """Same result as `lax.conv_transpose(x, kernel, strides, padding, ...)` (NHWC, HWIO).

  Args:
    x: (N, H, W, C_in).
    kernel: (KH, KW, C_in, C_out), or (KH, KW, C_out, C_in) with
      `transpose_kernel=True` (the gradient-of-convolution convention of
      TensorFlow's `conv2d_transpose`, used for tied encoder/decoder weights).
    strides: (SH, SW).
    padding: "SAME", "VALID" or ((lo, hi), (lo, hi)) as in `lax.conv_transpose`.

  Returns:
    (N, H_out, W_out, C_out), with H_out as `lax.conv_transpose` gives it.

  On CPU computed by phases (the module docstring); elsewhere it is
  `lax.conv_transpose` (`model_ops.formulation("conv_transpose")`).
  """
  if model_ops.formulation("conv_transpose") == "xla":
    return jax.lax.conv_transpose(x, kernel, tuple(strides), padding,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  transpose_kernel=transpose_kernel, precision=precision)
  if transpose_kernel:
    kernel = jnp.swapaxes(jnp.flip(kernel, (0, 1)), 2, 3)
  kh, kw, _, cout = kernel.shape
  sh, sw = strides
  pads = [padding] * 2 if isinstance(padding, str) else list(padding)
  taps_h, pad_h, out_h = _phase_plan(x.shape[1], kh, sh, *_transpose_padding(kh, sh, pads[0]))
  taps_w, pad_w, out_w = _phase_plan(x.shape[2], kw, sw, *_transpose_padding(kw, sw, pads[1]))
  if taps_h.shape[0] == taps_w.shape[0] == 1:  # One tap per phase, e.g. kernel = stride.
    y = _matmul_phases(x, kernel, taps_h, taps_w, pad_h, pad_w, precision)
  elif kh * kw <= MAX_OVERLAP_ADD_TAPS and taps_h.size * taps_w.size > kh * kw:
    y = _overlap_add_phases(x, kernel, taps_h, taps_w, pad_h, pad_w, precision)
  else:
    y = _packed_phases(x, kernel, taps_h, taps_w, pad_h, pad_w, precision)
  n, rows, _, cols, _, _ = y.shape
  return y.reshape(n, rows * sh, cols * sw, cout)[:, :out_h, :out_w, :]


def _phase_kernel(kernel, taps_h, taps_w) -> jax.Array:
  """(WH, WW, C_in, SH * SW * C_out): each phase's taps, zeros where a phase has none."""
  kh, kw, cin, cout = kernel.shape
  (window_h, sh), (window_w, sw) = taps_h.shape, taps_w.shape
  if taps_h.max() == kh or taps_w.max() == kw:
    # A zero tap at index kh (kw) for phases that skip a window position.
    kernel = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
  phase_kernel = _take_static(_take_static(kernel, taps_h.ravel(), 0), taps_w.ravel(), 1)
  # (WH, SH, WW, SW, C_in, C_out) -> (WH, WW, C_in, SH, SW, C_out).
  return phase_kernel.reshape(window_h, sh, window_w, sw, cin, cout).transpose(
      0, 2, 4, 1, 3, 5).reshape(window_h, window_w, cin, sh * sw * cout)


def _split_phases(y: jax.Array, strides: tuple[int, int]) -> jax.Array:
  """(N, rows, cols, SH * SW * C_out) -> (N, rows, SH, cols, SW, C_out)."""
  n, rows, cols, channels = y.shape
  sh, sw = strides
  return y.reshape(n, rows, cols, sh, sw, channels // (sh * sw)).transpose(0, 1, 3, 2, 4, 5)


def _packed_phases(x, kernel, taps_h, taps_w, pad_h, pad_w, precision) -> jax.Array:
  """(N, rows, SH, cols, SW, C_out): the phases as channels of one convolution."""
  y = convolution.conv_general_dilated(
      x, _phase_kernel(kernel, taps_h, taps_w), window_strides=(1, 1), padding=(pad_h, pad_w),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision)
  return _split_phases(y, (taps_h.shape[1], taps_w.shape[1]))


def _matmul_phases(x, kernel, taps_h, taps_w, pad_h, pad_w, precision) -> jax.Array:
  """(N, rows, SH, cols, SW, C_out) for one tap per phase, as a matrix product.

  The packed form's 1x1 convolution computes the same, but XLA:CPU runs its
  weight gradient as a convolution with a whole-image window: U-Net's four
  layers took 107.3 ms forward + backward that way and 54.1 ms as this product
  (experiments/benchmarks/upsample_ops_unet_b4_128.log).
  """
  phase_kernel = _phase_kernel(kernel, taps_h, taps_w)[0, 0]
  x = jax.lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (*pad_h, 0), (*pad_w, 0), (0, 0, 0)])
  n, rows, cols, cin = x.shape
  y = jnp.matmul(x.reshape(-1, cin), phase_kernel, precision=precision)
  return _split_phases(y.reshape(n, rows, cols, -1), (taps_h.shape[1], taps_w.shape[1]))


def _take_static(array: jax.Array, indices: np.ndarray, axis: int) -> jax.Array:
  """`jnp.take(array, indices, axis)`, as a slice (and a flip) where the indices run by one.

  XLA:CPU runs the gradient of a gather, even with constant indices, as a
  scatter; that of a slice is a pad.
  """
  indices = [int(i) for i in indices]
  steps = set(np.diff(indices).tolist())
  first, last = min(indices), max(indices)
  if steps <= {1}:
    return jax.lax.slice_in_dim(array, first, last + 1, axis=axis)
  if steps == {-1}:
    return jnp.flip(jax.lax.slice_in_dim(array, first, last + 1, axis=axis), axis)
  return jnp.take(array, np.asarray(indices), axis=axis)


def _overlap_add_phases(x, kernel, taps_h, taps_w, pad_h, pad_w, precision) -> jax.Array:
  """(N, rows, SH, cols, SW, C_out): each phase a sum of shifted tap products."""
  kh, kw, cin, cout = kernel.shape
  (window_h, sh), (window_w, sw) = taps_h.shape, taps_w.shape
  n, height, width, _ = x.shape
  z = jnp.matmul(x.reshape(-1, cin), kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout),
                 precision=precision).reshape(n, height, width, kh, kw, cout)
  # Pad (or crop, for negative amounts) so that phase row m reads rows m..m+window-1.
  z = jax.lax.pad(z, jnp.zeros((), z.dtype),
                  [(0, 0, 0), (*pad_h, 0), (*pad_w, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0)])
  rows, cols = z.shape[1] - window_h + 1, z.shape[2] - window_w + 1
  phase_rows = []
  for a_h in range(sh):
    phases = []
    for a_w in range(sw):
      total = jnp.zeros((n, rows, cols, cout), z.dtype)
      for j_h, t_h in enumerate(taps_h[:, a_h]):
        for j_w, t_w in enumerate(taps_w[:, a_w]):
          if t_h < kh and t_w < kw:
            total = total + z[:, j_h:j_h + rows, j_w:j_w + cols, t_h, t_w]
      phases.append(total)
    phase_rows.append(jnp.stack(phases, axis=3))  # (N, rows, cols, SW, C_out)
  return jnp.stack(phase_rows, axis=2)  # (N, rows, SH, cols, SW, C_out)


class ConvTranspose(nn.Module):
  """Drop-in for `nn.ConvTranspose` (same parameters, same output), fast gradients.

  Set `kernel` to share a kernel owned by another layer (tied weights); the
  layer then creates only its bias.
  """
  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (2, 2)
  padding: PaddingLike = "SAME"
  use_bias: bool = True
  transpose_kernel: bool = False
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  kernel_init: Any = nn.initializers.glorot_uniform()
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array, kernel: jax.Array | None = None) -> jax.Array:
    if kernel is None:
      shape = tuple(self.kernel_size) + (x.shape[-1], self.features)
      if self.transpose_kernel:
        shape = tuple(self.kernel_size) + (self.features, x.shape[-1])
      kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
    dtype = self.dtype or x.dtype
    y = conv_transpose(x.astype(dtype), kernel.astype(dtype), self.strides, self.padding,
                       transpose_kernel=self.transpose_kernel)
    if self.use_bias:
      bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
      y = y + bias.astype(dtype)
    return y


def check_divisible(x: jax.Array, total_stride: int, model_name: str) -> None:
  """Raises a clear error when the spatial size does not divide by the model's stride."""
  height, width = x.shape[1], x.shape[2]
  if height % total_stride or width % total_stride:
    raise ValueError(
        f"{model_name}: input height and width must be divisible by {total_stride} "
        f"(the model's total stride); got {height}x{width}. Set dataset.image_size "
        f"to a multiple of {total_stride}.")


def max_pool(x: jax.Array, window: Sequence[int], strides: Sequence[int] | None = None,
             padding: PaddingLike = "VALID") -> jax.Array:
  """`flax.linen.max_pool` over (N, H, W, C), as reshapes or strided slices and maxima.

  Same output. The gradient differs only where a window holds tied maxima: they
  share it instead of the first taking all of it. Written this way because
  XLA:CPU lowers the gradient of `lax.reduce_window` max to an arg-max
  reduce-window over materialised index arrays and a scatter: fwd + bwd of a
  2x2 pool of a (4, 128, 128, 64) activation took 41.9 ms that way and 21.1 ms
  as a reshape, 1.6x to 7x faster over the pools of
  experiments/benchmarks/max_pool_ops.log. Off CPU it is `flax.linen.max_pool`
  (`model_ops.formulation("max_pool")`).
  """
  window = tuple(window)
  strides = tuple(strides or window)
  if model_ops.formulation("max_pool") == "xla":
    return nn.max_pool(x, window, strides, padding)
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(x.shape[1:3], window, strides, padding)
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=-jnp.inf)
  out_h, out_w = ((size - w) // s + 1 for size, w, s in zip(x.shape[1:3], window, strides))
  (window_h, window_w), (stride_h, stride_w) = window, strides
  if window == strides:  # Non-overlapping windows: one reshape, one reduction.
    x = x[:, :out_h * stride_h, :out_w * stride_w]
    n, _, _, c = x.shape
    return x.reshape(n, out_h, window_h, out_w, window_w, c).max(axis=(2, 4))
  result = None
  for i in range(window_h):
    for j in range(window_w):
      tap = x[:, i:i + stride_h * (out_h - 1) + 1:stride_h,
              j:j + stride_w * (out_w - 1) + 1:stride_w]
      result = tap if result is None else jnp.maximum(result, tap)
  return result
