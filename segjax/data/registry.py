"""One registry for every dataset: `load(dataset_config) -> SegmentationData`."""

from __future__ import annotations

from typing import Any, Callable

import jax
import ml_collections
from jax.experimental import multihost_utils

from segjax.data import sources
from segjax.data.record_source import RecordSource, SegmentationData  # noqa: F401 (re-exported)


_DATASETS: dict[str, Callable[[ml_collections.ConfigDict], SegmentationData]] = {}


def register(name: str):
  """Decorator: registers `fn(dataset_config) -> SegmentationData` under `name`."""
  def wrap(fn):
    if name in _DATASETS:
      raise ValueError(f"dataset {name!r} is registered twice")
    _DATASETS[name] = fn
    return fn
  return wrap


def names() -> list[str]:
  return sorted(_DATASETS)


def prepare_once(prepare: Callable[[], Any], name: str) -> Any:
  """`prepare()` on process 0 while the other processes wait, then on them, so
  that hosts sharing a data dir never write it at the same time (a dataset, or
  statistics of it): the first call writes, the later ones read."""
  if jax.process_count() == 1:
    return prepare()
  if jax.process_index() == 0:
    result = prepare()
    multihost_utils.sync_global_devices(f"segjax: {name} prepared")
    return result
  multihost_utils.sync_global_devices(f"segjax: {name} prepared")
  return prepare()


def load(dataset_config: ml_collections.ConfigDict) -> SegmentationData:
  """Prepares (once) and opens the dataset named by `dataset_config.name`."""
  name = dataset_config.name
  if name not in _DATASETS:
    raise ValueError(f"unknown dataset {name!r} (config key dataset.name); "
                     f"registered datasets: {', '.join(names())}")
  data = prepare_once(lambda: _DATASETS[name](dataset_config), f"dataset {name}")
  if dataset_config.get("grayscale", False):
    data = sources.to_grayscale(data)
  for split, source in (("train", data.train), ("eval", data.eval)):
    if len(source) == 0:
      raise ValueError(f"dataset {name!r}: the {split} split "
                       f"({dataset_config.get(split + '_split')!r}) has no examples")
  return data
