"""The one image resize of training and inference: bilinear, antialiased when shrinking.

Along each axis, output pixel j of `out` pixels resampled from `span` input
pixels starting at `start` (continuous coordinates: input pixel i covers
[i, i + 1)) is the weighted mean of the input pixels under a triangle of
half-width max(scale, 1) input pixels centred on start + (j + 0.5) * scale,
scale = span / out; pixels outside the image are left out and the weights
renormalised. Enlarging, that is the two-tap half-pixel bilinear
(PyTorch's align_corners=False, edges clamped); shrinking, every input pixel
under the footprint counts. PIL's `Image.resize(BILINEAR)`,
`jax.image.resize(method="linear", antialias=True)` and PyTorch's
`interpolate(mode="bilinear", antialias=True)` compute the same.

- `resize_image`: uint8 images on the host, the images of training (squash,
  rescale-and-crop, scale_crop) and of inference at its test sizes
  (`segjax.inference.segmenter`): the network sees the same pixels in both.
  PIL's C implementation (fixed-point weights, uint8 after each pass; within
  one level of `resize`).
- `taps`: the weights, per output pixel (input indices, weights), for
  device code.
- `resize` (one size for a whole batch, traced into exported graphs: gathers
  of constant indices, products and sums) and `resize_batch` (a size per
  image, what the segmenter resizes logits with): jittable.
Masks are not resized here: they keep nearest-neighbour sampling.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image


def taps(in_size: int, out_size: int, start: float = 0.0,
         span: float | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(indices int32 (out_size, T), weights float32 (out_size, T)) of one axis.

  Output pixel j is sum_t weights[j, t] * input[indices[j, t]]; T is the most
  input pixels any output pixel needs (1 for a copy, 2 enlarging, about
  2 * scale + 1 shrinking), unused taps have weight 0 and a valid index.
  `start`, `span`: the resampled part of the axis in input pixels (a crop
  box; default the whole axis).
  """
  span = float(in_size if span is None else span)
  scale = span / out_size
  support = max(scale, 1.0)
  centre = start + (np.arange(out_size) + 0.5) * scale
  first = np.floor(centre - support + 0.5).astype(np.int64)
  index = first[:, None] + np.arange(int(math.ceil(2 * support)) + 1)
  weight = np.maximum(0.0, 1.0 - np.abs(index + 0.5 - centre[:, None]) / support)
  weight[(index < 0) | (index >= in_size)] = 0.0
  total = weight.sum(1, keepdims=True)
  weight = np.divide(weight, total, out=np.zeros_like(weight), where=total > 0)
  # Each row's used taps first, then as few columns as the busiest row needs.
  order = np.argsort(weight <= 0, axis=1, kind="stable")
  weight = np.take_along_axis(weight, order, 1)
  index = np.take_along_axis(np.clip(index, 0, in_size - 1), order, 1)
  count = max(1, int((weight > 0).sum(1).max()))
  index = np.where(weight[:, :count] > 0, index[:, :count], index[:, :1])
  return index.astype(np.int32), weight[:, :count].astype(np.float32)


def _planes(image: np.ndarray) -> list[Image.Image]:
  image = np.ascontiguousarray(image)
  if image.shape[-1] == 3:
    return [Image.fromarray(image, "RGB")]
  # One 8-bit plane per channel: PIL would read 4 channels as RGBA (resized with the
  # colour premultiplied by the 4th channel) and has no 2-channel mode.
  return [Image.fromarray(np.ascontiguousarray(image[..., c]), "L")
          for c in range(image.shape[-1])]


def resize_image(image: np.ndarray, size: tuple[int, int], box=None) -> np.ndarray:
  """uint8 (H, W, C) -> uint8 (height, width, C) = `size`, of `box` = (left, top,
  right, bottom) in input pixels (floats; default the whole image)."""
  height, width = size
  if box is None and tuple(image.shape[:2]) == (height, width):
    return image
  planes = [np.asarray(plane.resize((width, height), Image.BILINEAR, box=box))
            for plane in _planes(image)]
  return planes[0] if image.shape[-1] == 3 else np.stack(planes, axis=-1)


def _apply(x: jax.Array, axis: int, index: np.ndarray, weight: np.ndarray) -> jax.Array:
  shape = [1] * x.ndim
  shape[axis] = index.shape[0]
  out = None
  for t in range(index.shape[1]):
    part = jnp.take(x, index[:, t], axis=axis, mode="clip") * (
        weight[:, t].reshape(shape))
    out = part if out is None else out + part
  return out


def resize(images: jax.Array, size: tuple[int, int]) -> jax.Array:
  """float (N, H, W, C) -> (N, height, width, C), every image alike (static shapes;
  the weights are constants of the traced program)."""
  for axis, length in ((1, size[0]), (2, size[1])):
    if images.shape[axis] != length:
      images = _apply(images, axis, *taps(images.shape[axis], length))
  return images


def _gather_rows(x: jax.Array, index: jax.Array, weight: jax.Array) -> jax.Array:
  """x (N, H, ...), index and weight (N, h, T) -> (N, h, ...): sums of weighted rows of
  each image (row gathers of a flattened batch: XLA:CPU copies whole rows)."""
  count, height = x.shape[:2]
  flat = x.reshape(count * height, -1)
  rows = index + (jnp.arange(count, dtype=index.dtype) * height)[:, None, None]
  out = None
  for t in range(index.shape[-1]):
    part = jnp.take(flat, rows[..., t].reshape(-1), axis=0, mode="clip") * (
        weight[..., t].reshape(-1, 1))
    out = part if out is None else out + part
  return out.reshape(count, index.shape[1], *x.shape[2:])


def resize_batch(x: jax.Array, rows: tuple, cols: tuple) -> jax.Array:
  """float (N, H, W, K) -> (N, h, w, K), each image with its own weights.

  `rows` = (indices, weights), int32 and float32 (N, h, T), from `taps` per
  image (stacked, padded with weight-0 taps and output pixels); `cols` the
  same over the width (N, w, T'). Output pixels whose weights are all 0 are 0.
  """
  # The width first, so that only the input and the half-done array are transposed,
  # never the (usually larger) output.
  across = jnp.swapaxes(_gather_rows(jnp.swapaxes(x, 1, 2), *cols), 1, 2)
  return _gather_rows(across, *rows)
