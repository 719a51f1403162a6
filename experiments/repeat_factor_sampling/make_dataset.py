"""Writes an unbalanced image folder from the synthetic shapes: triangles are rare in train.

  python experiments/repeat_factor_sampling/make_dataset.py OUT_DIR

OUT_DIR/train: 1000 images, of which 25 (2.5%) contain a triangle (class 3);
disks and squares are in most images. OUT_DIR/val: 300 images as the synthetic
shapes come (a triangle in about 3 of 4), so that the triangle IoU is measured
on enough triangles. Images and masks are `segjax.data.synthetic_shapes`
examples (64x64 PNG; masks 0 background, 1 disk, 2 square, 3 triangle),
selected by whether they contain a triangle; the split id keeps them apart
from that dataset's own splits.
"""

import os
import sys

from PIL import Image

from segjax.data import synthetic_shapes

TRIANGLE = synthetic_shapes.CLASS_NAMES.index("triangle")
TRAIN, TRAIN_WITH_TRIANGLES, VALIDATION = 1000, 25, 300


def write(folder: str, name: str, image, mask) -> None:
  for kind, array in (("images", image), ("masks", mask)):
    os.makedirs(os.path.join(folder, kind), exist_ok=True)
    Image.fromarray(array).save(os.path.join(folder, kind, f"{name}.png"))


def main(out_dir: str) -> None:
  with_triangle, without, index = 0, 0, 0
  while with_triangle + without < TRAIN:
    image, mask = synthetic_shapes.generate_example(0, 7, index)
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
    write(os.path.join(out_dir, "val"), f"{index:05d}",
          *synthetic_shapes.generate_example(0, 8, index))
  print(f"{out_dir}: {TRAIN} train images ({TRAIN_WITH_TRIANGLES} with a triangle, chosen "
        f"from {candidates} candidates), {VALIDATION} validation images")


if __name__ == "__main__":
  main(sys.argv[1])
