"""TFDS builders of datasets computed from a seed, and opening them as SegmentationData."""

from __future__ import annotations

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from segjax.data import tfds_utils
from segjax.data.registry import SegmentationData


class GeneratedBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Example `index` of split `name` is `generate(SEED, SPLITS[name][0], index)`.

  Subclasses set VERSION, SIZE (square images), SPLITS ({name: (split id,
  count)}), KEEP_ORDER (record i is example i) and `generate`, which returns
  (uint8 (SIZE, SIZE, 3) image, uint8 (SIZE, SIZE) mask).
  """
  SIZE: int
  SPLITS: dict[str, tuple[int, int]]
  SEED = 0
  KEEP_ORDER = False

  @staticmethod
  def generate(seed: int, split_id: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=type(self).__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(self.SIZE, self.SIZE, 3)),
            "mask": tfds.features.Image(shape=(self.SIZE, self.SIZE, 1)),
        }),
        disable_shuffling=self.KEEP_ORDER,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {name: self._generate_examples(split_id, count)
            for name, (split_id, count) in self.SPLITS.items()}

  def _generate_examples(self, split_id: int, count: int):
    for index in range(count):
      image, mask = self.generate(self.SEED, split_id, index)
      # PIL images: TFDS encodes them without TensorFlow.
      yield index, {"image": Image.fromarray(image), "mask": Image.fromarray(mask)}


def load(builder_class: type[GeneratedBuilder], dataset_config: ml_collections.ConfigDict,
         class_names: tuple[str, ...]) -> SegmentationData:
  builder = tfds_utils.prepare(builder_class(data_dir=tfds_utils.data_dir(dataset_config.data_dir)))
  return SegmentationData(
      train=tfds_utils.open_split(builder, dataset_config.train_split),
      eval=tfds_utils.open_split(builder, dataset_config.eval_split),
      num_classes=len(class_names), class_names=class_names, num_channels=3,
      ignore_index=dataset_config.ignore_index)
