"""Which padded shape and batch size each image runs at, so that images of many sizes
share a few compiled programs (`segjax.inference.segmenter`).

A compiled program serves one input shape. Padding an image into a larger
shape costs its extra pixels on every call; a new shape costs a compilation.
`plan_buckets` weighs the two for the images in view: it starts from each
image's own (stride-rounded) shape and merges shapes into their element-wise
maximum, or into a shape already compiled, while that lowers
(pixels of all images) + `compile_cost` x (new shapes).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

Shape = tuple[int, int]

# Network pixels whose inference costs about as much as one compilation of a forward
# pass (measured on a 2-core CPU with SegNet at a quarter width: 0.65 s to compile,
# 0.3 to 0.45 us per pixel). Accelerators compile slower and run far faster (their
# values here are estimates, not measurements).
COMPILE_COST_PIXELS = {"cpu": 2 ** 21}
ACCELERATOR_COMPILE_COST_PIXELS = 2 ** 26
# The same for the canvases at the original size (resizing logits back, arg-max,
# scoring: a few passes over memory per pixel, about 0.3 s of compilations per shape).
CANVAS_COMPILE_COST_PIXELS = {"cpu": 2 ** 25}
ACCELERATOR_CANVAS_COMPILE_COST_PIXELS = 2 ** 32
# Pixels per network call past which larger batches run hardly faster per image: on a
# CPU a 384x288 image alone runs within 10% of its speed in a batch of 4 (a 64x64 image
# twice as fast in a batch of 16); accelerators need far larger calls.
CALL_PIXELS = {"cpu": 2 ** 17}
ACCELERATOR_CALL_PIXELS = 2 ** 23
# A merged shape holds at most this many times the pixels of the largest image planned
# with it: a batch then needs at most this much more memory than that image's batch would.
MAX_GROWTH = 2.0


def compile_cost_pixels(platform: str) -> int:
  return COMPILE_COST_PIXELS.get(platform, ACCELERATOR_COMPILE_COST_PIXELS)


def canvas_compile_cost_pixels(platform: str) -> int:
  return CANVAS_COMPILE_COST_PIXELS.get(platform, ACCELERATOR_CANVAS_COMPILE_COST_PIXELS)


def batch_limit(pixels: int, largest: int, platform: str) -> int:
  """Images per network call for inputs of `pixels` pixels: a power of two filling about
  `CALL_PIXELS` (one at least, `largest` at most). Fewer batch sizes compile, and a
  CPU does not run a large image faster in a batch."""
  fit = max(CALL_PIXELS.get(platform, ACCELERATOR_CALL_PIXELS) // max(pixels, 1), 1)
  return min(1 << (fit.bit_length() - 1), largest)


def batch_size(count: int, largest: int) -> int:
  """Rows of the call that runs `count` images: a power of two (or `largest`), so that
  few batch sizes compile and a lone image is never padded to a full batch."""
  if count >= largest:
    return largest
  return min(1 << (count - 1).bit_length(), largest)


def plan_buckets(counts: Mapping[Shape, int], compiled: Sequence[Shape], compile_cost: float,
                 max_new: int, max_growth: float = MAX_GROWTH) -> dict[Shape, Shape | None]:
  """The padded shape each exact shape runs at.

  Args:
    counts: images per exact (height, width) network input shape.
    compiled: shapes already compiled (free to use, never grown).
    compile_cost: the cost of a new shape, in padded pixels.
    max_new: new shapes allowed.
    max_growth: a new merged shape, or a compiled shape used, has at most this many
      times the pixels of the largest shape in `counts` (a compiled shape of any
      size is used once no new shape is allowed).
  Returns:
    {exact shape: shape to pad it to}; None for the shapes that neither fit a
    compiled shape nor a new one within `max_new` (the fewest pixels first).

  Greedy: of all merges (two new shapes into their element-wise maximum, or a
  new shape into the smallest compiled one that holds it) the one that lowers
  the cost most is made, until none lowers it and at most `max_new` new shapes
  remain. Deterministic: ties go to the smaller shapes, in sorted order.
  """
  compiled = list(dict.fromkeys(tuple(s) for s in compiled))
  plan: dict[Shape, Shape | None] = {}
  clusters = []  # [shape, images, member shapes]; new shapes only.
  for shape in sorted(counts):
    if shape in compiled:
      plan[shape] = shape
    else:
      clusters.append([shape, counts[shape], [shape]])
  if not clusters:
    return plan
  limit = max_growth * max(h * w for h, w in counts)
  compiled_array = np.array(compiled, np.float64).reshape(-1, 2)
  compiled_area = compiled_array.prod(1)
  while clusters:
    heights = np.array([c[0][0] for c in clusters], np.float64)
    widths = np.array([c[0][1] for c in clusters], np.float64)
    images = np.array([c[1] for c in clusters], np.float64)
    own = images * heights * widths
    # Two new shapes into their maximum.
    area = np.maximum.outer(heights, heights) * np.maximum.outer(widths, widths)
    pair = np.add.outer(images, images) * area - np.add.outer(own, own) - compile_cost
    pair[np.tril_indices(len(clusters))] = np.inf
    pair[area > limit] = np.inf
    # A new shape into the smallest compiled shape that holds it.
    fits = ((compiled_array[None, :, 0] >= heights[:, None])
            & (compiled_array[None, :, 1] >= widths[:, None]))
    if len(clusters) <= max_new:
      fits &= compiled_area[None, :] <= limit
    host_area = np.where(fits, compiled_area[None, :], np.inf)
    host = np.argmin(host_area, axis=1) if compiled else np.zeros(len(clusters), int)
    into = (images * (host_area.min(1, initial=np.inf) - heights * widths) - compile_cost
            if compiled else np.full(len(clusters), np.inf))
    best_pair = np.unravel_index(np.argmin(pair), pair.shape)
    best_into = int(np.argmin(into))
    gain = min(pair[best_pair], into[best_into])
    if gain == np.inf or (gain >= 0 and len(clusters) <= max_new):
      break
    if into[best_into] <= pair[best_pair]:
      cluster = clusters.pop(best_into)
      for shape in cluster[2]:
        plan[shape] = compiled[host[best_into]]
      continue
    i, j = (int(v) for v in best_pair)
    second = clusters.pop(j)
    first = clusters[i]
    first[0] = (max(first[0][0], second[0][0]), max(first[0][1], second[0][1]))
    first[1] += second[1]
    first[2] += second[2]
    if first[0] in compiled:  # Grown into a compiled shape: it is free.
      clusters.pop(i)
      for shape in first[2]:
        plan[shape] = first[0]
  # Beyond max_new with no merge left: the shapes with the most pixels keep their own.
  clusters.sort(key=lambda c: -c[1] * c[0][0] * c[0][1])
  for rank, (shape, _, members) in enumerate(clusters):
    for member in members:
      plan[member] = shape if rank < max_new else None
  return plan
