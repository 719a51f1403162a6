"""Preparing and opening TFDS builders as ArrayRecord data sources (no TensorFlow)."""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from segjax.data.images import DatasetError


def prepare(builder: tfds.core.DatasetBuilder) -> tfds.core.DatasetBuilder:
  """Writes the dataset once (TFDS writes to a temporary folder and renames it
  when complete, so a failed preparation leaves nothing behind)."""
  if not builder.is_prepared():
    print(f"preparing dataset {builder.name} in {builder.data_dir} (once)", flush=True)
    tfds.disable_progress_bar()
    builder.download_and_prepare(file_format="array_record")
  return builder


def open_split(builder: tfds.core.DatasetBuilder, split: str):
  available = list(builder.info.splits.keys())
  if split not in available:
    raise DatasetError(f"dataset {builder.name!r} has no split {split!r}; "
                     f"available: {', '.join(available)} (config keys dataset.train_split, "
                     f"dataset.eval_split)")
  return builder.as_data_source(split)


def data_dir(path: str) -> str:
  return os.path.abspath(os.path.expanduser(path))
