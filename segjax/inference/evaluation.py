"""Scores a model on a split at the original resolution of its masks.

Every image goes through `segjax.inference.segmenter.Segmenter` (whole or slide mode,
flip and scales as configured); its logits come back at the mask's own size
and every original pixel that is not `ignore_index` counts once in the
confusion matrix. Totals stay on the device until the end of the split.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterator

import grain
import jax
import jax.numpy as jnp
import numpy as np

from segjax.data import pipeline
from segjax.data.registry import RecordSource
from segjax.inference import segmenter as segmenter_lib
from segjax.scoring import losses, metrics as metrics_lib


def standard_record(record: dict) -> dict:
  """{"image": uint8 (H, W, C), "mask": uint8 (H, W)} of a source's record."""
  record = pipeline.standard_record(record)
  return {"image": record["image"], "mask": record["mask"][..., 0]}


def read_records(source: RecordSource, indices=None) -> Iterator[tuple[int, dict]]:
  """(index, standard record) of `indices` (default: all), in order, decoded by threads."""
  indices = list(range(len(source))) if indices is None else list(indices)
  dataset = grain.MapDataset.source(indices).map(lambda i: (i, standard_record(source[i])))
  yield from dataset.to_iter_dataset(grain.ReadOptions(num_threads=4, prefetch_buffer_size=8))


@functools.partial(jax.jit, static_argnames=("objective", "num_classes", "ignore_index"),
                   donate_argnums=0)
def _score(totals: dict, logits: jax.Array, labels: jax.Array, *, objective, num_classes: int,
           ignore_index: int) -> tuple[dict, jax.Array]:
  """Adds a group's counts and loss sums to `totals`.

  Args:
    totals: "confusion" uint32 (2, C, C) (metrics.add_counts); "loss_sums" and
      "loss_normalisers", a float32 scalar per loss.
    logits: float32 (N, H, W, K) at the original size (canvas).
    labels: uint8 (N, H, W); `ignore_index` outside each image.
  Returns:
    (totals, int32 (N, C, C) confusion matrix of each image).
  """
  labels = labels.astype(jnp.int32)
  valid = labels != ignore_index
  predictions = losses.predicted_classes(logits)
  per_image = jax.vmap(lambda l, p, v: metrics_lib.confusion_matrix(l, p, v, num_classes))(
      labels, predictions, valid)
  add = lambda a, b: jax.tree.map(jnp.add, a, b)
  return {"confusion": metrics_lib.add_counts(totals["confusion"], per_image.sum(0)),
          "loss_sums": add(totals["loss_sums"], objective.sums(logits, labels, valid)),
          "loss_normalisers": add(totals["loss_normalisers"],
                                  objective.normalisers(labels, valid))}, per_image


def labels_canvas(group: segmenter_lib.Group, masks: dict, ignore_index: int) -> np.ndarray:
  """uint8 (N, H, W) masks of a group's images on its canvas; ignore_index elsewhere."""
  canvas = np.full(group.logits.shape[:3], ignore_index, np.uint8)
  for i, key in enumerate(group.keys):
    if key is not None:
      mask = masks.pop(key)
      canvas[i, :mask.shape[0], :mask.shape[1]] = mask
  return canvas


@dataclasses.dataclass
class Result:
  """Metrics of a split (`metrics.from_confusion_matrix`, "loss", and "confusion": the
  exact int64 (C, C) matrix) and each image's confusion matrix (index -> int64 (C, C))."""
  metrics: dict
  per_image: dict


def evaluate(segmenter: segmenter_lib.Segmenter, variables: dict, source: RecordSource, *,
             num_classes: int, ignore_index: int, objective: losses.Objective) -> Result:
  """Scores every image of `source` once, at its mask's size (see the module docstring)."""
  zeros = lambda: {name: segmenter.put(np.zeros((), np.float32)) for name in objective.weights}
  totals = {"confusion": segmenter.put(metrics_lib.zero_counts(num_classes)),
            "loss_sums": zeros(), "loss_normalisers": zeros()}  # Distinct buffers: donated.
  masks, keys, per_image = {}, [], []

  def images():
    for index, record in read_records(source):
      image, mask = record["image"], record["mask"]
      if mask.shape != image.shape[:2]:
        raise ValueError(f"example {index}: mask {mask.shape} and image {image.shape[:2]} "
                         "differ in size")
      masks[index] = mask
      yield index, image

  for group in segmenter.segment(variables, images()):
    labels = labels_canvas(group, masks, ignore_index)
    totals, counts = _score(totals, group.logits, segmenter.put(labels), objective=objective,
                            num_classes=num_classes, ignore_index=ignore_index)
    keys.append(group.keys)
    per_image.append(counts)
  totals, per_image = segmenter_lib.to_host((totals, per_image))  # One transfer, at the end.
  confusion = metrics_lib.exact_counts(totals["confusion"])
  result = metrics_lib.from_confusion_matrix(confusion)
  result["loss"] = float(objective.combine(totals["loss_sums"], totals["loss_normalisers"]))
  result["confusion"] = confusion
  images_confusion = {key: counts[i].astype(np.int64)
                      for group_keys, counts in zip(keys, per_image)
                      for i, key in enumerate(group_keys) if key is not None}
  return Result(result, images_confusion)


def image_score(confusion: np.ndarray) -> float:
  """One number per image, higher is better: the foreground F1 for two classes, the mean
  IoU of the classes present otherwise; 1 when there is nothing to find and nothing found."""
  scores = metrics_lib.from_confusion_matrix(confusion)
  value = scores["f1"] if confusion.shape[0] == 2 else scores["mean_iou"]
  return 1.0 if np.isnan(value) else float(value)


def pick_images(per_image: dict, count: int) -> tuple[list[int], list[int]]:
  """(the first `count` images, the `count` worst-scored others): the ones worth a look."""
  indices = sorted(per_image)
  fixed = indices[:count]
  others = sorted(indices[count:], key=lambda i: image_score(per_image[i]))
  return fixed, others[:count]


def predict_masks(segmenter: segmenter_lib.Segmenter, variables: dict,
                  images: dict) -> dict[int, np.ndarray]:
  """{key: uint8 (H, W) predicted classes} of {key: uint8 (H, W, C) image}."""
  out = {}
  for group in segmenter.segment(variables, images.items()):
    predictions = group.predictions()
    for i, key in enumerate(group.keys):
      if key is not None:
        height, width = group.sizes[i]
        out[key] = predictions[i, :height, :width].astype(np.uint8)
  return out
