"""Per-class loss weights from the training masks' class frequencies (`class_weights`).

`class_weights` in the config is a tuple (one weight per class) or a method:
  "median_frequency"   w_c = median_k f_k / f_c, where f_c = (pixels of class c) /
                       (labelled pixels of the training images in which c appears),
                       the median taken over the classes that appear (Eigen & Fergus
                       2015; used by SegNet and FC-DenseNet on CamVid).
  "inverse_frequency"  w_c = N / (C * n_c), with n_c the pixels of class c, N the
                       labelled pixels and C the classes: 1 for every class when
                       they are balanced, and pixel-weighted mean 1.
Pixels at `ignore_index` count nowhere. A class absent from the training masks
gets weight 0 (it has no pixel to weigh) and a warning.

The counts take one pass over the training split at its stored resolution; the
weights are cached as JSON in `<dataset.data_dir>/class_weights/`, keyed by the
split's identity (its stable repr, as grain's checkpoints use) and the labels.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Callable

import ml_collections
import numpy as np

from segjax.data import class_stats, tfds_utils
from segjax.data.registry import RecordSource, SegmentationData

METHODS = ("median_frequency", "inverse_frequency")
CACHE_FOLDER = "class_weights"


def pixel_counts(source: RecordSource, num_classes: int,
                 ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
  """One pass over `source`'s masks (`class_stats.pixel_counts`).

  Returns:
    (class_pixels, image_pixels), int64 (num_classes,): the pixels of each class,
    and the labelled pixels of the images in which each class appears.
  """
  per_image = class_stats.pixel_counts(source, num_classes, ignore_index)
  labelled = per_image.sum(axis=1, keepdims=True)
  return per_image.sum(axis=0), np.where(per_image > 0, labelled, 0).sum(axis=0)


def from_counts(method: str, class_pixels: np.ndarray, image_pixels: np.ndarray) -> np.ndarray:
  """float64 (num_classes,) weights by `method` (module docstring); absent classes 0."""
  present = class_pixels > 0
  if not present.any():
    raise ValueError("the training masks have no labelled pixel: no class weights to compute")
  weights = np.zeros(len(class_pixels), np.float64)
  if method == "median_frequency":
    frequency = class_pixels[present] / image_pixels[present]
    weights[present] = np.median(frequency) / frequency
  elif method == "inverse_frequency":
    weights[present] = class_pixels.sum() / (len(class_pixels) * class_pixels[present])
  else:
    raise ValueError(f"class_weights={method!r}: use a tuple of per-class weights or one of "
                     f"{', '.join(METHODS)}")
  return weights


def compute(method: str, data: SegmentationData, cache_dir: str | None = None,
            log: Callable[[str], None] = print) -> tuple[float, ...]:
  """The weights of `method` for `data`'s training split, cached in `cache_dir`."""
  if method not in METHODS:
    raise ValueError(f"class_weights={method!r}: use a tuple of per-class weights or one of "
                     f"{', '.join(METHODS)}")
  identity = json.dumps({"train": repr(data.train), "num_classes": data.num_classes,
                         "ignore_index": data.ignore_index})
  path = None
  if cache_dir:
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, CACHE_FOLDER, f"{key}.json")
    if os.path.exists(path):
      with open(path) as f:
        cached = json.load(f)
      counts = np.asarray(cached["class_pixels"]), np.asarray(cached["image_pixels"])
      return tuple(float(w) for w in from_counts(method, *counts))
  log(f"counting the class pixels of {len(data.train)} training masks (once)")
  class_pixels, image_pixels = pixel_counts(data.train, data.num_classes, data.ignore_index)
  if path:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w") as f:
      json.dump({"source": identity, "class_names": list(data.class_names),
                 "class_pixels": class_pixels.tolist(),
                 "image_pixels": image_pixels.tolist()}, f, indent=1)
    os.replace(temporary, path)  # Atomic: a reader never sees half a file.
  absent = [name for name, n in zip(data.class_names, class_pixels) if n == 0]
  if absent:
    log(f"class_weights={method}: class(es) {', '.join(absent)} have no training pixel, "
        f"weight 0")
  return tuple(float(w) for w in from_counts(method, class_pixels, image_pixels))


def method_of(value) -> str | None:
  """The method `class_weights` names ("NAME", or ("NAME",) as the command line parses
  it), None for numbers; an unknown name is a ValueError."""
  if isinstance(value, (tuple, list)) and len(value) == 1 and isinstance(value[0], str):
    value = value[0]
  if not isinstance(value, str):
    return None
  if value not in METHODS:
    raise ValueError(f"class_weights={value!r}: use a tuple of per-class weights or one of "
                     f"{', '.join(METHODS)}")
  return value


def resolve(config: ml_collections.ConfigDict, data: SegmentationData,
            log: Callable[[str], None] = print) -> ml_collections.ConfigDict:
  """`config` with `class_weights` as numbers: a method's name is computed (and logged),
  a tuple is checked to have one weight per class."""
  weights = config.class_weights
  method = method_of(weights)
  if method:
    weights = compute(method, data, tfds_utils.data_dir(config.dataset.data_dir), log)
    log(f"class_weights={method}: " +
        " ".join(f"{name} {w:.4f}" for name, w in zip(data.class_names, weights)))
    values = config.to_dict()
    values["class_weights"] = tuple(weights)
    resolved = ml_collections.ConfigDict(values)
    resolved.lock()
    return resolved
  if weights and len(weights) != data.num_classes:
    raise ValueError(f"class_weights has {len(weights)} entries but dataset "
                     f"{config.dataset.name!r} has {data.num_classes} classes: give one "
                     f"weight per class, or one of {', '.join(METHODS)}")
  return config
