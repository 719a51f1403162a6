"""Augmentations by name, applied on the host to uint8 numpy records.

A record is `{"image": uint8 (H, W, C), "mask": uint8 (H, W, 1)}`. Geometric
augmentations transform image and mask identically; photometric ones touch
the image only. Each is a function `(record, rng, config) -> record` where
`rng` is a `np.random.Generator` that grain derives from the seed and the
record's position, so a run's augmentations are reproducible.
"""

from __future__ import annotations

from typing import Callable

import ml_collections
import numpy as np

Augmentation = Callable[[dict, np.random.Generator, ml_collections.ConfigDict], dict]
_AUGMENTATIONS: dict[str, Augmentation] = {}


def register(name: str):
  def wrap(fn):
    _AUGMENTATIONS[name] = fn
    return fn
  return wrap


def names() -> list[str]:
  return sorted(_AUGMENTATIONS)


def get(name: str) -> Augmentation:
  if name not in _AUGMENTATIONS:
    raise ValueError(f"unknown augmentation {name!r} in dataset.augmentations; "
                     f"available: {', '.join(names())}")
  return _AUGMENTATIONS[name]


@register("flip")
def horizontal_flip(record, rng, config):
  del config
  if rng.random() < 0.5:
    record = {**record, "image": record["image"][:, ::-1], "mask": record["mask"][:, ::-1]}
  return record
