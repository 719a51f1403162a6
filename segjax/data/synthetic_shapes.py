"""A synthetic multi-class dataset of shapes, generated offline, deterministic.

Each 64x64 RGB image has 2 to 6 shapes (disks, squares, triangles) of random
size, position and colour, overlapping (later ones in front), over a textured
background with a colour gradient and sensor noise. Colour says nothing about
the class: a network must use shape. Mask: 0 background, 1 disk, 2 square,
3 triangle. 1000 train and 200 validation images.
"""

from __future__ import annotations

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from segjax.data import generated
from segjax.data.registry import SegmentationData, register

SIZE = 64
SPLITS = {"train": (0, 1000), "validation": (1, 200)}
CLASS_NAMES = ("background", "disk", "square", "triangle")


def _shape(rng: np.random.Generator, kind: int) -> np.ndarray:
  yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
  cy, cx = rng.uniform(6, SIZE - 6, size=2)
  radius = rng.uniform(5, 14)
  if kind == 1:
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
  angle = rng.uniform(0, 2 * np.pi)
  c, s = np.cos(angle), np.sin(angle)
  u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
  if kind == 2:
    half = radius * 0.85
    return (np.abs(u) <= half) & (np.abs(v) <= half)
  # Equilateral triangle with circumradius `radius`: inside all three edges.
  inside = np.ones_like(u, bool)
  for k in range(3):
    theta = 2 * np.pi * k / 3
    inside &= u * np.cos(theta) + v * np.sin(theta) <= radius / 2
  return inside


def generate_example(seed: int, split_id: int, index: int) -> tuple[np.ndarray, np.ndarray]:
  """(image uint8 (64, 64, 3), mask uint8 (64, 64) in [0, 3]); pure in its arguments."""
  rng = np.random.default_rng([seed, split_id, index])
  yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
  start, end = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
  direction = rng.uniform(0, 1)
  ramp = (direction * yy + (1 - direction) * xx)[..., None]
  image = start * (1 - ramp) + end * ramp
  image = image + rng.normal(scale=rng.uniform(0, 20), size=(SIZE, SIZE, 1))
  mask = np.zeros((SIZE, SIZE), np.uint8)
  for _ in range(rng.integers(2, 7)):
    kind = int(rng.integers(1, len(CLASS_NAMES)))
    shape = _shape(rng, kind)
    colour = rng.uniform(0, 255, size=3)
    shading = 1 + rng.normal(scale=0.05, size=(SIZE, SIZE, 1))
    image = np.where(shape[..., None], colour * shading, image)
    mask[shape] = kind
  image = image + rng.normal(scale=4.0, size=image.shape)
  return np.clip(image, 0, 255).astype(np.uint8), mask


class SyntheticShapes(generated.GeneratedBuilder):
  """Synthetic shapes, 4 classes: 1000 train and 200 validation images, 64x64."""

  VERSION = tfds.core.Version("1.0.0")
  SIZE = SIZE
  SPLITS = SPLITS
  KEEP_ORDER = True  # Record i of a split is example i.
  generate = staticmethod(generate_example)


@register("synthetic_shapes")
def load(dataset_config: ml_collections.ConfigDict) -> SegmentationData:
  return generated.load(SyntheticShapes, dataset_config, CLASS_NAMES)
