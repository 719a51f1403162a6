"""Segmentation metrics from a confusion matrix accumulated over a whole split.

The confusion matrix is summed on device batch by batch (never an average of
per-batch scores) and turned into metrics once, on the host. A batch's counts
are int32 (exact below 2^31 pixels per cell and batch); the running total is a
pair of uint32 words (`add_counts`), exact up to 2^64 with JAX's default 32-bit
types and no transfer to the host per batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def confusion_matrix(labels: jax.Array, predictions: jax.Array, valid: jax.Array,
                     num_classes: int) -> jax.Array:
  """Counts (ground truth, prediction) pairs over the valid pixels.

  Args:
    labels: int (...,) ground-truth class per pixel; invalid pixels may hold
      any value (e.g. the ignore index).
    predictions: int (...,) predicted class per pixel.
    valid: bool (...,) pixels that count.
    num_classes: C.

  Returns:
    int32 (C, C): rows are ground truth, columns predictions.
  """
  labels = jnp.where(valid, labels, 0)
  index = labels.reshape(-1) * num_classes + predictions.reshape(-1)
  counts = jnp.bincount(index, weights=valid.reshape(-1).astype(jnp.int32),
                        length=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def zero_counts(num_classes: int) -> np.ndarray:
  """uint32 (2, C, C): the low and high 32-bit words of a count of 0 (host)."""
  return np.zeros((2, num_classes, num_classes), np.uint32)


def add_counts(total: jax.Array, counts: jax.Array) -> jax.Array:
  """total (uint32 (2, ...), low and high words) + counts (int32 >= 0, same shape)."""
  counts = counts.astype(jnp.uint32)
  low = total[0] + counts  # Wraps modulo 2^32; a wrap is a carry into the high word.
  high = total[1] + (low < counts).astype(jnp.uint32)
  return jnp.stack([low, high])


def exact_counts(total) -> np.ndarray:
  """int64 counts of a uint32 (2, ...) total of `add_counts` (host)."""
  total = np.asarray(total).astype(np.uint64)
  return ((total[1] << np.uint64(32)) | total[0]).astype(np.int64)


def from_confusion_matrix(confusion: np.ndarray) -> dict:
  """Metrics of a (C, C) confusion matrix (rows ground truth, columns prediction).

  A class absent from both ground truth and prediction has IoU/Dice NaN and is
  left out of the means. `f1` is the foreground (class 1) F1 for two classes,
  the mean Dice over classes otherwise.

  Returns:
    dict with `pixel_accuracy`, `mean_iou`, `iou_per_class` (list), `f1`,
    `dice_per_class` (list).
  """
  confusion = np.asarray(confusion, np.float64)
  true_positive = np.diag(confusion)
  false_positive = confusion.sum(0) - true_positive
  false_negative = confusion.sum(1) - true_positive
  total = confusion.sum()
  with np.errstate(invalid="ignore", divide="ignore"):
    iou = true_positive / (true_positive + false_positive + false_negative)
    dice = 2 * true_positive / (2 * true_positive + false_positive + false_negative)
  present = ~np.isnan(iou)
  num_classes = confusion.shape[0]
  if num_classes == 2:
    f1 = dice[1]
  else:
    f1 = dice[present].mean() if present.any() else np.nan
  return {
      "pixel_accuracy": float(true_positive.sum() / total) if total else float("nan"),
      "mean_iou": float(iou[present].mean()) if present.any() else float("nan"),
      "iou_per_class": [float(v) for v in iou],
      "f1": float(f1),
      "dice_per_class": [float(v) for v in dice],
  }


# The scalar metrics of an evaluation (`from_confusion_matrix` and the loss), which
# `config.best_metric` may name.
SCALAR_METRICS = ("mean_iou", "f1", "pixel_accuracy", "loss")
PER_CLASS_METRICS = ("iou", "precision", "recall", "f1")


def class_names(names, num_classes: int) -> list[str]:
  """`names` (e.g. labels.json's class_names) when one per class, else class_0, class_1, ..."""
  names = [str(name) for name in names or ()]
  return names if len(names) == num_classes else [f"class_{i}" for i in range(num_classes)]


def per_class(confusion: np.ndarray, names) -> dict:
  """Named per-class metrics of a (C, C) confusion matrix (rows ground truth).

  Returns:
    {"iou/NAME", "precision/NAME", "recall/NAME", "f1/NAME": float} for each
    class; NaN where undefined (e.g. precision of a class never predicted).
  """
  confusion = np.asarray(confusion, np.float64)
  true_positive = np.diag(confusion)
  predicted, actual = confusion.sum(0), confusion.sum(1)
  with np.errstate(invalid="ignore", divide="ignore"):
    values = {"iou": true_positive / (predicted + actual - true_positive),
              "precision": true_positive / predicted,
              "recall": true_positive / actual,
              "f1": 2 * true_positive / (predicted + actual)}
  names = class_names(names, confusion.shape[0])
  return {f"{metric}/{name}": float(values[metric][i])
          for metric in PER_CLASS_METRICS for i, name in enumerate(names)}
