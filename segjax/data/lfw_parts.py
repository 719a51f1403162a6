"""`lfw_parts`: faces from LFW Part Labels with face and hair masks.

`dataset.source_dir` holds, matched by file name:
  inputs/NAME.jpg             the face image
  targets/NAME.jpg            face + hair = foreground (JPEG mask)
  targets_face_only/NAME.jpg  face = foreground (JPEG mask)
JPEG masks are lossy: a pixel is foreground when its gray value is
> `dataset.mask_threshold` (127).

The sorted file list is split 70/15/15 in order into train, validation and
test (test = the last 15%), as the published results on this data.
Stored once per folder: the image and a parts mask (0 background, 1 face,
2 hair = face+hair minus face; a pixel in the face mask is face even where
the face+hair mask missed it). `dataset.target` picks the labels read:
  face (default)  background / face (hair is background)
  face_hair       background / face and hair
  parts           background / face / hair
`dataset.grayscale=True` gives one-channel images, as the published results.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from segjax.data import folder_builder, images, sources, tfds_utils
from segjax.data.folder_builder import Example
from segjax.data.images import DatasetError
from segjax.data.registry import SegmentationData, register

FOLDERS = ("inputs", "targets", "targets_face_only")
SPLITS = ("train", "validation", "test")
SPLIT_RATIOS = (0.70, 0.15, 0.15)
BACKGROUND, FACE, HAIR = 0, 1, 2
TARGETS = {  # Name: (parts class -> target class, class names).
    "face": ((0, 1, 0), ("background", "face")),
    "face_hair": ((0, 1, 1), ("background", "face_hair")),
    "parts": ((0, 1, 2), ("background", "face", "hair")),
}


class LfwParts(folder_builder.FolderBuilder):
  """LFW Part Labels: face images with background / face / hair masks."""

  def __init__(self, *, source_dir: str, threshold: int = 127, data_dir: str,
               config_name_: str | None = None):
    self.threshold = int(threshold)
    if not 0 <= self.threshold < 255:
      raise DatasetError(f"dataset.mask_threshold={threshold} must be in [0, 254]")
    super().__init__(source_dir=source_dir, options={"threshold": self.threshold},
                     data_dir=data_dir, config_name_=config_name_,
                     init_kwargs=dict(source_dir=source_dir, threshold=threshold,
                                      data_dir=data_dir))

  def list_splits(self) -> dict[str, list[Example]]:
    missing = [name for name in FOLDERS if not os.path.isdir(os.path.join(self.source_dir, name))]
    if missing:
      raise DatasetError(f"dataset.source_dir={self.source_dir} lacks the folder(s) "
                         f"{', '.join(missing)}/ (needs {', '.join(FOLDERS)})")
    listed = {name: images.list_image_files(os.path.join(self.source_dir, name))
              for name in FOLDERS}
    inputs = listed["inputs"]
    problems = []
    for name in FOLDERS[1:]:
      folder = os.path.join(self.source_dir, name)
      problems += [f"{path}: no mask named {stem}.* in {folder}"
                   for stem, path in inputs.items() if stem not in listed[name]]
      problems += [f"{path}: no image named {stem}.* in {self.source_dir}/inputs"
                   for stem, path in listed[name].items() if stem not in inputs]
    if problems:
      raise DatasetError(images.summarize(problems, "image/mask files do not match"))
    examples = [Example(stem, inputs[stem], (listed["targets"][stem],
                                             listed["targets_face_only"][stem]))
                for stem in sorted(inputs)]
    return images.split_by_ratios(examples, SPLIT_RATIOS, SPLITS, seed=None)

  def read(self, example: Example):
    stored, image = folder_builder.read_image(example.image_path)
    foreground = []
    for path in example.mask_paths:
      mask = images.open_image(path)
      images.check_same_size(image, example.image_path, mask, path)
      options = images.MaskOptions(encoding="threshold", threshold=self.threshold)
      foreground.append(images.decode_mask(mask, path, options).astype(bool))
    face_hair, face = foreground
    parts = np.where(face, FACE, np.where(face_hair, HAIR, BACKGROUND)).astype(np.uint8)
    return stored, parts


@register("lfw_parts")
def load(dataset_config: ml_collections.ConfigDict) -> SegmentationData:
  target = sources.choose_target("lfw_parts", dataset_config.target, TARGETS, "face")
  mapping, names = TARGETS[target]
  table = np.full(256, dataset_config.ignore_index, np.uint8)
  table[:3] = mapping
  builder = folder_builder.prepare(LfwParts(
      source_dir=dataset_config.source_dir, threshold=dataset_config.mask_threshold,
      data_dir=tfds_utils.data_dir(dataset_config.data_dir)))
  return SegmentationData(
      train=sources.LabelMapSource(tfds_utils.open_split(builder, dataset_config.train_split),
                                   table),
      eval=sources.LabelMapSource(tfds_utils.open_split(builder, dataset_config.eval_split),
                                  table),
      num_classes=len(names), class_names=names, num_channels=3,
      ignore_index=dataset_config.ignore_index)
