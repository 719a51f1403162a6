"""Pictures of predictions: colour masks, overlays, and image | truth | prediction | errors grids."""

from __future__ import annotations

import numpy as np
from PIL import Image

IGNORE_COLOUR = (255, 255, 255)


def palette(num_classes: int) -> np.ndarray:
  """uint8 (num_classes, 3): black background, then well-separated hues."""
  colours = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
             (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60),
             (250, 190, 212), (0, 128, 128)]
  rng = np.random.default_rng(0)
  while len(colours) < num_classes:
    colours.append(tuple(int(v) for v in rng.integers(0, 256, 3)))
  return np.asarray(colours[:num_classes], np.uint8)


def colourise(mask: np.ndarray, num_classes: int) -> np.ndarray:
  """(H, W) class indices -> uint8 (H, W, 3); labels >= num_classes (ignored) in white."""
  colours = np.concatenate([palette(num_classes), np.full((256 - num_classes, 3), IGNORE_COLOUR,
                                                          np.uint8)])
  return colours[np.clip(mask, 0, 255).astype(np.uint8)]


def as_rgb(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  return np.repeat(image, 3, -1) if image.shape[-1] == 1 else image[..., :3]


def overlay(image: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = 0.5) -> np.ndarray:
  """Blends the class colours over the image; background (class 0) stays as it is."""
  rgb = as_rgb(image).astype(np.float32)
  coloured = colourise(mask, num_classes).astype(np.float32)
  blend = np.where((mask > 0)[..., None], (1 - alpha) * rgb + alpha * coloured, rgb)
  return blend.astype(np.uint8)


FALSE_POSITIVE = (255, 0, 255)  # Magenta: a class predicted where the truth has another.
FALSE_NEGATIVE = (0, 200, 255)  # Cyan: a foreground pixel of the truth predicted as background.
COLUMN_TITLES = ("image", "ground truth", "prediction",
                 "errors: magenta false positive, cyan false negative")


def error_map(image: np.ndarray, label: np.ndarray, prediction: np.ndarray,
              num_classes: int) -> np.ndarray:
  """uint8 (H, W, 3): the image, grey and dimmed, with false negatives (truth not
  background, predicted background) in cyan and other wrong pixels (false positives of
  the predicted class) in magenta; ignored pixels (label >= num_classes) white."""
  gray = as_rgb(image).astype(np.float32).mean(-1, keepdims=True) * 0.5
  out = np.repeat(gray, 3, -1).astype(np.uint8)
  ignored = label >= num_classes
  wrong = (label != prediction) & ~ignored
  missed = wrong & (prediction == 0)
  out[wrong & ~missed] = FALSE_POSITIVE
  out[missed] = FALSE_NEGATIVE
  out[ignored] = IGNORE_COLOUR
  return out


def fit(array: np.ndarray, long_side: int, nearest: bool) -> np.ndarray:
  """Resized so that its longer side is `long_side`, aspect ratio kept."""
  height, width = array.shape[:2]
  factor = long_side / max(height, width)
  size = (max(1, round(width * factor)), max(1, round(height * factor)))
  return np.asarray(Image.fromarray(np.ascontiguousarray(array)).resize(
      size, Image.NEAREST if nearest else Image.BILINEAR))


def prediction_grid(rows, num_classes: int, row_titles=(), long_side: int = 256,
                    gap: int = 4) -> np.ndarray:
  """uint8 (H, W, 3): a title line, then per example its title and four pictures at its
  own aspect ratio, `long_side` pixels on the longer side: image | ground truth |
  prediction | errors (`error_map`).

  Args:
    rows: (image uint8 (H, W, C), label (H, W), prediction (H, W)) per example.
    row_titles: a line of text above each example (e.g. its index and score).
  """
  from PIL import ImageDraw

  cells = []
  for image, label, prediction in rows:
    cells.append([fit(as_rgb(image), long_side, False),
                  fit(colourise(label, num_classes), long_side, True),
                  fit(colourise(prediction, num_classes), long_side, True),
                  fit(error_map(image, label, prediction, num_classes), long_side, True)])
  text_height = 14
  column = max([cell.shape[1] for row in cells for cell in row] + [long_side // 2])
  width = 4 * column + 5 * gap
  height = text_height + gap + sum(row[0].shape[0] + text_height + gap for row in cells)
  canvas = Image.new("RGB", (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  for c, title in enumerate(COLUMN_TITLES):
    draw.text((gap + c * (column + gap), 1), title, fill=(0, 0, 0))
  top = text_height + gap
  for r, row in enumerate(cells):
    if r < len(row_titles):
      draw.text((gap, top), str(row_titles[r]), fill=(0, 0, 0))
    top += text_height
    for c, cell in enumerate(row):
      canvas.paste(Image.fromarray(cell), (gap + c * (column + gap), top))
    top += row[0].shape[0] + gap
  return np.asarray(canvas)


def save_png(array: np.ndarray, path: str) -> None:
  Image.fromarray(np.asarray(array, np.uint8)).save(path)
