"""A synthetic skin-segmentation dataset, generated offline, deterministic.

Each 128x128 RGB image has faces, hands and arms in skin tones (light to dark),
with lighting gradients, shading and sensor noise, over a cluttered background.
The clutter deliberately includes surfaces whose colour sits inside the skin
range (wood, sand, beige fabric) but carries texture (stripes, checks, grain),
and skin is sometimes occluded by clutter; a fixed colour threshold therefore
does not solve the task, a network must use texture and shape.
Mask: 1 = skin, 0 = not skin.
"""

from __future__ import annotations

import colorsys

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from segjax.data import generated
from segjax.data.registry import SegmentationData, register

SIZE = 128
SPLITS = {"train": (0, 2000), "validation": (1, 200)}

SKIN_TONES = np.array([  # sRGB anchors from light to dark skin.
    [238, 206, 179], [226, 185, 150], [212, 165, 125], [198, 145, 105],
    [175, 120, 85], [150, 100, 68], [120, 78, 52], [90, 58, 40],
], np.float32)


_GRID = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
_GRID.flags.writeable = False  # Shared by every shape drawn.


def _grid():
  """(yy, xx): each pixel's row and column, float32 (SIZE, SIZE), read-only."""
  return _GRID[0], _GRID[1]


def _ellipse(rng, cy, cx, ry, rx):
  yy, xx = _grid()
  angle = rng.uniform(0, np.pi)
  c, s = np.cos(angle), np.sin(angle)
  u = (xx - cx) * c + (yy - cy) * s
  v = -(xx - cx) * s + (yy - cy) * c
  return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _capsule(y0, x0, y1, x1, radius):
  yy, xx = _grid()
  dy, dx = y1 - y0, x1 - x0
  t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-6), 0, 1)
  return (yy - y0 - t * dy) ** 2 + (xx - x0 - t * dx) ** 2 <= radius ** 2


def _skin_shape(rng):
  kind = rng.choice(["face", "hand", "arm"], p=[0.45, 0.35, 0.2])
  cy, cx = rng.uniform(10, SIZE - 10, size=2)
  if kind == "face":
    ry = rng.uniform(14, 34)
    return _ellipse(rng, cy, cx, ry, ry * rng.uniform(0.7, 0.85))
  if kind == "arm":
    angle = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(40, 90)
    return _capsule(cy, cx, cy + length * np.sin(angle), cx + length * np.cos(angle),
                    rng.uniform(7, 12))
  palm = rng.uniform(11, 18)
  mask = _ellipse(rng, cy, cx, palm, palm * 0.85)
  base = rng.uniform(0, 2 * np.pi)
  for finger in range(rng.integers(3, 6)):
    angle = base + (finger - 2) * 0.35
    length = palm * rng.uniform(1.3, 1.9)
    mask |= _capsule(cy, cx, cy + length * np.sin(angle), cx + length * np.cos(angle),
                     palm * 0.25)
  return mask


def _skin_colour(rng):
  i = rng.uniform(0, len(SKIN_TONES) - 1)
  lo = int(i)
  colour = SKIN_TONES[lo] * (1 - (i - lo)) + SKIN_TONES[min(lo + 1, len(SKIN_TONES) - 1)] * (i - lo)
  return colour * rng.uniform(0.92, 1.08, size=3)


def _is_skin_like(colour) -> bool:
  h, s, v = colorsys.rgb_to_hsv(*(np.asarray(colour, np.float64) / 255))
  return (h <= 0.14 or h >= 0.97) and 0.1 <= s <= 0.75 and v >= 0.25


def _other_colour(rng):
  """A colour outside the skin range: the only kind a plain, untextured surface gets,
  so that no smooth surface is skin-coloured without being skin."""
  while True:
    colour = rng.uniform(0, 255, size=3).astype(np.float32)
    if not _is_skin_like(colour):
      return colour


def _skin_like_colour(rng):
  """A non-skin surface colour inside the skin colour range (wood, sand, beige)."""
  h = rng.uniform(0.03, 0.11)
  s = rng.uniform(0.2, 0.6)
  v = rng.uniform(0.35, 0.95)
  return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32) * 255


def _texture(rng):
  """A zero-mean texture field with strong local contrast."""
  yy, xx = _grid()
  kind = rng.integers(0, 3)
  if kind == 0:  # Stripes.
    angle, period = rng.uniform(0, np.pi), rng.uniform(3, 9)
    field = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
  elif kind == 1:  # Checks.
    period = rng.uniform(3, 8)
    field = np.sign(np.sin(np.pi * xx / period) * np.sin(np.pi * yy / period))
  else:  # Grain.
    field = rng.normal(size=(SIZE, SIZE)).astype(np.float32)
  return field[..., None] * rng.uniform(25, 50)


def _lighting(rng):
  yy, xx = _grid()
  gy, gx = rng.normal(scale=0.25 / SIZE, size=2)
  return (1.0 + gy * (yy - SIZE / 2) + gx * (xx - SIZE / 2))[..., None] * rng.uniform(0.85, 1.1)


def _clutter(rng, image):
  for _ in range(rng.integers(5, 12)):
    cy, cx = rng.uniform(0, SIZE, size=2)
    if rng.random() < 0.5:
      shape = _ellipse(rng, cy, cx, rng.uniform(6, 40), rng.uniform(6, 40))
    else:
      h, w = rng.uniform(8, 60, size=2)
      yy, xx = _grid()
      shape = (np.abs(yy - cy) < h / 2) & (np.abs(xx - cx) < w / 2)
    if rng.random() < 0.5:  # Skin-coloured surface: always textured.
      colour, texture = _skin_like_colour(rng), _texture(rng)
    else:
      colour = _other_colour(rng)
      texture = _texture(rng) if rng.random() < 0.5 else 0.0
    image = np.where(shape[..., None], colour + texture, image)
  return image, shape


def generate_example(seed: int, split_id: int, index: int) -> tuple[np.ndarray, np.ndarray]:
  """Returns (image uint8 (128, 128, 3), mask uint8 (128, 128)); pure in its arguments."""
  rng = np.random.default_rng([seed, split_id, index])
  if rng.random() < 0.3:  # A textured, skin-coloured background (wood, sand, fabric).
    image = _skin_like_colour(rng) + _texture(rng)
  else:
    image = _other_colour(rng) + _texture(rng) * rng.uniform(0, 1)
  image, _ = _clutter(rng, image)
  mask = np.zeros((SIZE, SIZE), bool)
  for _ in range(rng.integers(1, 4)):
    shape = _skin_shape(rng)
    shading = _lighting(rng) + rng.normal(scale=3.0, size=(SIZE, SIZE, 1)) / 255
    image = np.where(shape[..., None], _skin_colour(rng) * shading, image)
    mask |= shape
  if rng.random() < 0.3:  # Something in front of the skin.
    image, occluder = _occlude(rng, image)
    mask &= ~occluder
  image = image * _lighting(rng) + rng.normal(scale=4.0, size=image.shape)
  return np.clip(image, 0, 255).astype(np.uint8), mask.astype(np.uint8)


def _occlude(rng, image):
  cy, cx = rng.uniform(0, SIZE, size=2)
  shape = _ellipse(rng, cy, cx, rng.uniform(6, 20), rng.uniform(6, 20))
  colour = _skin_like_colour(rng) if rng.random() < 0.5 else _other_colour(rng)
  return np.where(shape[..., None], colour + _texture(rng), image), shape


class SyntheticSkin(generated.GeneratedBuilder):
  """Synthetic skin segmentation: 2000 train and 200 validation images, 128x128."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.1.0": "Plain surfaces never skin-coloured; larger hands and arms."}
  SIZE = SIZE
  SPLITS = SPLITS
  generate = staticmethod(generate_example)


@register("synthetic_skin")
def load(dataset_config: ml_collections.ConfigDict) -> SegmentationData:
  return generated.load(SyntheticSkin, dataset_config, ("background", "skin"))
