"""`oxford_iiit_pet`: the Oxford-IIIT Pet trimaps, read from TFDS as ArrayRecord.

The official TFDS dataset (`tfds.data_source("oxford_iiit_pet")`, prepared in
`dataset.data_dir`, downloaded on first use where the network allows).
Splits: train (3680) and test (3669); `validation` reads test, as the dataset
has no validation split. Trimap values 1 = pet, 2 = background, 3 = border.
`dataset.target`:
  trimap (default)  3 classes: 0 background, 1 pet, 2 border
  binary            2 classes: 0 background, 1 pet; border pixels are
                    `dataset.ignore_index`
Any other mask value (none in the real data) becomes `dataset.ignore_index`,
and a mask whose size differs from its image's is resized to it (nearest).
"""

from __future__ import annotations

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from segjax.data import sources, tfds_utils
from segjax.data.images import DatasetError
from segjax.data.registry import SegmentationData, register

TFDS_NAME = "oxford_iiit_pet"
PET, BACKGROUND, BORDER = 1, 2, 3  # Trimap values.
TARGETS = {
    "trimap": ("background", "pet", "border"),
    "binary": ("background", "pet"),
}


def label_table(target: str, ignore_index: int) -> np.ndarray:
  """uint8 (256,): trimap value -> class."""
  table = np.full(256, ignore_index, np.uint8)
  table[BACKGROUND], table[PET] = 0, 1
  table[BORDER] = 2 if target == "trimap" else ignore_index
  return table


def open_tfds(name: str, split: str, data_dir: str):
  """`tfds.data_source`, with what to do when the data is not there."""
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir)
  except Exception as error:  # Download or preparation failed: say how to provide the data.
    raise DatasetError(
        f"TFDS dataset {name!r} (split {split!r}) cannot be opened from {data_dir}: {error}. "
        f"Prepare it where a network is available with `tfds build {name} "
        f"--file_format=array_record --data_dir=DIR` and set dataset.data_dir=DIR") from error


@register("oxford_iiit_pet")
def load(dataset_config: ml_collections.ConfigDict) -> SegmentationData:
  target = sources.choose_target(TFDS_NAME, dataset_config.target, TARGETS, "trimap")
  names = TARGETS[target]
  if dataset_config.ignore_index < len(names):
    raise DatasetError(f"dataset.ignore_index={dataset_config.ignore_index} is a class of "
                       f"{TFDS_NAME} ({target}): use a value >= {len(names)}")
  table = label_table(target, dataset_config.ignore_index)
  data_dir = tfds_utils.data_dir(dataset_config.data_dir)

  def split(name):
    source = open_tfds(TFDS_NAME, sources.official_split(name), data_dir)
    return sources.LabelMapSource(source, table, mask_key="segmentation_mask")

  return SegmentationData(
      train=split(dataset_config.train_split), eval=split(dataset_config.eval_split),
      num_classes=len(names), class_names=names, num_channels=3,
      ignore_index=dataset_config.ignore_index)
