"""Per-class results a person reads: a console table, and the confusion matrix as .csv and .png.

The confusion matrix has ground truth in rows and predictions in columns
(`metrics.confusion_matrix`). The picture is row-normalised: each cell is the
share of a class's pixels predicted as each class, so a rare class's row is
as readable as the background's.
"""

from __future__ import annotations

import csv
import os

import jax
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segjax.scoring import metrics as metrics_lib

FOLDER = "confusion"  # In a run's workdir: final.csv|png and best.csv|png.


def table(confusion: np.ndarray, names) -> str:
  """Rows: class, pixels of that class, IoU, precision, recall, F1."""
  confusion = np.asarray(confusion)
  names = metrics_lib.class_names(names, confusion.shape[0])
  values = metrics_lib.per_class(confusion, names)
  width = max(len("class"), *(len(name) for name in names))
  header = f"{'class':<{width}}  {'pixels':>12}  " + "  ".join(
      f"{metric:>9}" for metric in metrics_lib.PER_CLASS_METRICS)
  lines = [header, "-" * len(header)]
  for name, pixels in zip(names, confusion.sum(1)):
    cells = [values[f"{metric}/{name}"] for metric in metrics_lib.PER_CLASS_METRICS]
    lines.append(f"{name:<{width}}  {int(pixels):>12,}  " + "  ".join(
        f"{'-':>9}" if np.isnan(v) else f"{v:>9.4f}" for v in cells))
  return "\n".join(lines)


def write_csv(confusion: np.ndarray, names, path: str) -> None:
  """Pixel counts; first row and column name the classes (rows truth, columns prediction)."""
  confusion = np.asarray(confusion)
  names = metrics_lib.class_names(names, confusion.shape[0])
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["truth \\ prediction", *names])
    for name, row in zip(names, confusion):
      writer.writerow([name, *(int(v) for v in row)])


def read_csv(path: str) -> tuple[list[str], np.ndarray]:
  """(class names, int64 (C, C) counts) of a file `write_csv` wrote."""
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  return rows[0][1:], np.asarray([[int(v) for v in row[1:]] for row in rows[1:]], np.int64)


def heat_map(confusion: np.ndarray, names, title: str = "") -> np.ndarray:
  """uint8 (H, W, 3): the row-normalised matrix, white (0%) to dark blue (100%),
  each cell labelled with its percentage, classes named on both axes."""
  confusion = np.asarray(confusion, np.float64)
  names = metrics_lib.class_names(names, confusion.shape[0])
  count = len(names)
  with np.errstate(invalid="ignore", divide="ignore"):
    shares = np.nan_to_num(confusion / confusion.sum(1, keepdims=True))
  font = ImageFont.load_default(size=12)
  text_width = lambda text: int(font.getlength(text))
  cell = max(44, text_width("100.0") + 8)
  label_width = max(text_width(name) for name in names) + 12
  top = label_width + 36  # Column names written upwards, the axis title above them.
  left = label_width + 20
  title = title or "confusion matrix"
  footer = "rows: ground truth; cells: % of the row's pixels"
  size = (max(left + count * cell, text_width(title), text_width(footer)) + 10,
          top + count * cell + 30)
  image = Image.new("RGB", size, "white")
  draw = ImageDraw.Draw(image)
  draw.text((4, 4), title, fill="black", font=font)
  draw.text((left, 20), "prediction", fill="black", font=font)
  draw.text((4, top + count * cell + 10), footer, fill="black", font=font)
  for j, name in enumerate(names):
    label = Image.new("RGB", (text_width(name) + 4, 16), "white")
    ImageDraw.Draw(label).text((2, 0), name, fill="black", font=font)
    label = label.rotate(90, expand=True)
    image.paste(label, (left + j * cell + (cell - label.width) // 2, top - 4 - label.height))
  for i, name in enumerate(names):
    draw.text((left - 8 - text_width(name), top + i * cell + cell // 2 - 7), name,
              fill="black", font=font)
    for j in range(count):
      share = shares[i, j]
      colour = tuple(int(round(255 + (target - 255) * share)) for target in (8, 48, 107))
      box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 1, top + (i + 1) * cell - 1)
      draw.rectangle(box, fill=colour, outline=(200, 200, 200))
      text = f"{100 * share:.1f}"
      draw.text((box[0] + (cell - text_width(text)) // 2, box[1] + cell // 2 - 7), text,
                fill="white" if share > 0.5 else "black", font=font)
  return np.asarray(image)


def save(confusion: np.ndarray, names, directory: str, name: str, title: str = "") -> list[str]:
  """Writes `directory/name.csv` and `directory/name.png`; returns their paths."""
  os.makedirs(directory, exist_ok=True)
  paths = [os.path.join(directory, f"{name}.{ext}") for ext in ("csv", "png")]
  write_csv(confusion, names, paths[0])
  Image.fromarray(heat_map(confusion, names, title)).save(paths[1])
  return paths


def save_in_workdir(workdir: str, name: str, confusion: np.ndarray, names, title: str) -> None:
  """`save` into workdir/confusion (JAX process 0 only)."""
  if jax.process_index() == 0:
    save(confusion, names, os.path.join(workdir, FOLDER), name, title)
