"""Resizing with PyTorch's `F.interpolate` semantics, for the SMP decoders.

`nearest` is `mode="nearest"`: output pixel `i` reads input `floor(i * in / out)`.
`bilinear` is `mode="bilinear"`: with `align_corners=True` output `i` samples input
coordinate `i * (in - 1) / (out - 1)` (the corners coincide); with `False` it samples
`(i + 0.5) * in / out - 0.5`, clamped at 0 (pixel centres). Neither antialiases, so
`jax.image.resize` (half-pixel centres, antialiased when shrinking) does not match.

Bilinear resizing is two matrix products with (out, in) interpolation matrices
built at trace time, so its gradient is two matrix products as well. Where a size
is symbolic (an export traced for any multiple of the stride), the two taps of each
output pixel are gathered instead, by the same formula.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _nearest_indices(in_size: int, out_size: int) -> np.ndarray:
  return np.minimum(np.floor(np.arange(out_size) * (in_size / out_size)).astype(np.int64),
                    in_size - 1)


def nearest(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """(N, H, W, C) -> (N, size[0], size[1], C), PyTorch's "nearest" mode."""
  for axis, out_size in zip((1, 2), size):
    in_size = x.shape[axis]
    if out_size == in_size:
      continue
    if out_size % in_size == 0:  # Whole-number factor: a repeat, whose gradient is a sum.
      x = jnp.repeat(x, out_size // in_size, axis=axis)
    else:
      x = jnp.take(x, _nearest_indices(in_size, out_size), axis=axis)
  return x


def _bilinear_matrix(in_size: int, out_size: int, align_corners: bool) -> np.ndarray:
  """(out_size, in_size) matrix whose rows hold each output pixel's two taps."""
  out = np.arange(out_size, dtype=np.float64)
  if align_corners:
    source = out * ((in_size - 1) / (out_size - 1)) if out_size > 1 else np.zeros_like(out)
  else:
    source = np.maximum((out + 0.5) * (in_size / out_size) - 0.5, 0.0)
  low = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
  high = np.minimum(low + 1, in_size - 1)
  frac = source - low
  matrix = np.zeros((out_size, in_size), np.float64)
  np.add.at(matrix, (np.arange(out_size), low), 1.0 - frac)
  np.add.at(matrix, (np.arange(out_size), high), frac)
  return matrix.astype(np.float32)


def bilinear(x: jax.Array, size: tuple[int, int], align_corners: bool) -> jax.Array:
  """(N, H, W, C) -> (N, size[0], size[1], C), PyTorch's "bilinear" mode; keeps x.dtype."""
  height, width = x.shape[1:3]
  if (height, width) == tuple(size):
    return x
  if (height, width) == (1, 1):  # A broadcast (ASPP's image-pooling branch).
    return jnp.broadcast_to(x, (x.shape[0], *size, x.shape[3]))
  if not all(isinstance(n, int) for n in (height, width, *size)):
    for axis, out_size in zip((1, 2), size):
      x = _bilinear_gather(x, axis, out_size, align_corners)
    return x
  rows = jnp.asarray(_bilinear_matrix(height, size[0], align_corners), x.dtype)
  cols = jnp.asarray(_bilinear_matrix(width, size[1], align_corners), x.dtype)
  x = jnp.einsum("oh,nhwc->nowc", rows, x)
  return jnp.einsum("pw,nowc->nopc", cols, x)


def _bilinear_gather(x: jax.Array, axis: int, out_size, align_corners: bool) -> jax.Array:
  """`bilinear` along one axis for sizes known only when the function runs."""
  in_size = jnp.asarray(x.shape[axis], jnp.float32)
  out = jnp.arange(out_size, dtype=jnp.float32)
  if align_corners:
    source = out * ((in_size - 1) / jnp.maximum(jnp.asarray(out_size, jnp.float32) - 1, 1))
  else:
    source = jnp.maximum((out + 0.5) * (in_size / jnp.asarray(out_size, jnp.float32)) - 0.5, 0)
  last = jnp.asarray(x.shape[axis], jnp.int32) - 1
  low = jnp.minimum(jnp.floor(source).astype(jnp.int32), last)
  high = jnp.minimum(low + 1, last)
  shape = [1] * x.ndim
  shape[axis] = -1
  frac = (source - low).astype(x.dtype).reshape(shape)
  return jnp.take(x, low, axis=axis) * (1 - frac) + jnp.take(x, high, axis=axis) * frac


def upsample_bilinear(x: jax.Array, factor: int) -> jax.Array:
  """`nn.Upsample(scale_factor=factor, mode="bilinear", align_corners=True)`."""
  return bilinear(x, (x.shape[1] * factor, x.shape[2] * factor), align_corners=True)
