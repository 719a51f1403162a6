"""Scale-robustness sets from the SFA validation faces: each photo shrunk to 1/2 and 1/4
of its size and pasted at a random place on a canvas of its original size whose
background is non-skin: a plain colour or a texture (blurred blocks or stripes of
blue, green, grey and purple tones), with mask 0 there.

  python experiments/skin_sfa_scales/make_set.py --sfa /work/shared/data/skin_sfa \\
      --output /tmp/skin_sfa_scales --seed 0

writes OUTPUT/half/val/{images,masks}/ and OUTPUT/quarter/val/{images,masks}/ (PNG),
111 pairs each; the same seed gives the same files. Score a run on them with
  python -m segjax.evaluate --workdir RUN --config.dataset.source_dir=OUTPUT/half \\
      --config.dataset.split_file=
"""

import argparse
import csv
import os

import numpy as np
from PIL import Image, ImageFilter

# Background tones far from skin hues (RGB).
TONES = np.array([(40, 70, 160), (60, 140, 200), (30, 110, 60), (110, 170, 90), (90, 90, 90),
                  (170, 170, 175), (100, 60, 140), (20, 30, 50), (200, 210, 220),
                  (50, 150, 140)], np.uint8)


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """uint8 (height, width, 3): plain, blurred blocks or stripes, from TONES."""
  kind = rng.integers(3)
  if kind == 0:
    return np.broadcast_to(TONES[rng.integers(len(TONES))], (height, width, 3)).copy()
  if kind == 1:
    blocks = TONES[rng.integers(len(TONES), size=(rng.integers(3, 9), rng.integers(3, 9)))]
    image = Image.fromarray(blocks).resize((width, height), Image.NEAREST)
    return np.asarray(image.filter(ImageFilter.GaussianBlur(rng.uniform(2, 12))))
  period = int(rng.integers(8, 64))
  a, b = TONES[rng.choice(len(TONES), 2, replace=False)]
  yy, xx = np.mgrid[0:height, 0:width]
  stripes = ((xx + yy * rng.uniform(-1, 1)) // period) % 2
  return np.where(stripes[..., None] == 0, a, b).astype(np.uint8)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sfa", required=True, help="skin_sfa folder (images/, masks/, manifest)")
  parser.add_argument("--output", required=True)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  with open(os.path.join(args.sfa, "manifest.csv"), newline="") as f:
    names = sorted(row["name"] for row in csv.DictReader(f) if row["orig_split"] == "val")
  for label, factor in (("half", 2), ("quarter", 4)):
    rng = np.random.default_rng([args.seed, factor])
    image_dir = os.path.join(args.output, label, "val", "images")
    mask_dir = os.path.join(args.output, label, "val", "masks")
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(mask_dir, exist_ok=True)
    for name in names:
      photo = Image.open(os.path.join(args.sfa, "images", name + ".jpg")).convert("RGB")
      mask = Image.open(os.path.join(args.sfa, "masks", name + ".png")).convert("L")
      width, height = photo.size
      small = (round(width / factor), round(height / factor))
      top = int(rng.integers(0, height - small[1] + 1))
      left = int(rng.integers(0, width - small[0] + 1))
      canvas = np.array(background(rng, height, width))
      canvas[top:top + small[1], left:left + small[0]] = np.asarray(
          photo.resize(small, Image.BILINEAR))
      canvas_mask = np.zeros((height, width), np.uint8)
      canvas_mask[top:top + small[1], left:left + small[0]] = np.asarray(
          mask.resize(small, Image.NEAREST))
      Image.fromarray(canvas).save(os.path.join(image_dir, name + ".png"))
      Image.fromarray(canvas_mask).save(os.path.join(mask_dir, name + ".png"))
    print(f"{len(names)} images at 1/{factor} in {os.path.join(args.output, label)}")


if __name__ == "__main__":
  main()
