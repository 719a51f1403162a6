"""Writes an unbalanced image folder from the synthetic shapes: triangles are rare in train.

  python experiments/repeat_factor_sampling/make_dataset.py OUT_DIR [--colour]

OUT_DIR/train: 1000 images, of which 25 (2.5%) contain a triangle (class 3);
disks and squares are in most images. OUT_DIR/val: 300 images as the synthetic
shapes come (a triangle in about 3 of 4), so that the triangle IoU is measured
on enough triangles. Images and masks are `segjax.data.synthetic_shapes`
examples (64x64 PNG; masks 0 background, 1 disk, 2 square, 3 triangle),
selected by whether they contain a triangle; the split id keeps them apart
from that dataset's own splits. With --colour each class is also painted in
its own hue (shaded by the original image), so that a small network can tell
the classes apart within a few hundred steps: what is left to learn is
mostly how often each class is seen.
"""

import os
import sys

import numpy as np
from PIL import Image

from segjax.data import synthetic_shapes

TRIANGLE = synthetic_shapes.CLASS_NAMES.index("triangle")
TRAIN, TRAIN_WITH_TRIANGLES, VALIDATION = 1000, 25, 300
# disk, square, triangle: red, green, blue.
CLASS_COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], np.float32)


def paint(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Each shape in its class's colour, shaded by the image's own brightness."""
  shading = 0.6 + 0.4 * image.mean(axis=-1, keepdims=True) / 255
  painted = np.where(mask[..., None] > 0, CLASS_COLOURS[np.maximum(mask, 1) - 1] * shading,
                     image)
  return np.clip(painted, 0, 255).astype(np.uint8)


def write(folder: str, name: str, image, mask) -> None:
  for kind, array in (("images", image), ("masks", mask)):
    os.makedirs(os.path.join(folder, kind), exist_ok=True)
    Image.fromarray(array).save(os.path.join(folder, kind, f"{name}.png"))


def example(split_id: int, index: int, colour: bool):
  image, mask = synthetic_shapes.generate_example(0, split_id, index)
  return (paint(image, mask) if colour else image), mask


def main(out_dir: str, colour: bool) -> None:
  with_triangle, without, index = 0, 0, 0
  while with_triangle + without < TRAIN:
    image, mask = example(7, index, colour)
    has_triangle = bool((mask == TRIANGLE).any())
    if has_triangle and with_triangle < TRAIN_WITH_TRIANGLES:
      with_triangle += 1
    elif not has_triangle and without < TRAIN - TRAIN_WITH_TRIANGLES:
      without += 1
    else:
      index += 1
      continue
    write(os.path.join(out_dir, "train"), f"{index:05d}", image, mask)
    index += 1
  candidates = index
  for index in range(VALIDATION):
    write(os.path.join(out_dir, "val"), f"{index:05d}", *example(8, index, colour))
  print(f"{out_dir}: {TRAIN} train images ({TRAIN_WITH_TRIANGLES} with a triangle, chosen "
        f"from {candidates} candidates), {VALIDATION} validation images")


if __name__ == "__main__":
  main(sys.argv[1], "--colour" in sys.argv[2:])
