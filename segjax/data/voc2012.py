"""`voc2012`: PASCAL VOC 2012 segmentation (21 classes), from the official archive.

File: `VOCtrainval_11-May-2012.tar` (host.robots.ox.ac.uk/pascal/VOC/voc2012/),
from `dataset.source_dir` or downloaded and checked (segjax.data.official_files).
Read from it, under VOCdevkit/VOC2012/: ImageSets/Segmentation/{train,val}.txt
(the splits: train 1464, validation 1449 images), JPEGImages/NAME.jpg and
SegmentationClass/NAME.png (palette PNGs whose indices are the classes 0-20;
255 marks object borders and difficult regions, which become
`dataset.ignore_index`, excluded from loss and metrics as in FCN's scoring).
Prepared once as ArrayRecord in `dataset.data_dir`; no TensorFlow.
"""

from __future__ import annotations

import io

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from segjax.data import images, official_files, sources, tfds_utils
from segjax.data.images import DatasetError
from segjax.data.official_files import OfficialFile
from segjax.data.registry import SegmentationData, register

CLASS_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")
BORDER = 255
ARCHIVE = OfficialFile(
    "VOCtrainval_11-May-2012.tar",
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    1999639040, "e14f763270cf193d0b5f74b169f44157a4b0c6efa708f4dd0ff78ee691763bcb")
ROOT = "VOCdevkit/VOC2012"
SPLIT_LISTS = {"train": f"{ROOT}/ImageSets/Segmentation/train.txt",
               "validation": f"{ROOT}/ImageSets/Segmentation/val.txt"}


def image_member(name: str) -> str:
  return f"{ROOT}/JPEGImages/{name}.jpg"


def mask_member(name: str) -> str:
  return f"{ROOT}/SegmentationClass/{name}.png"


def decode_mask(data: bytes, where: str) -> np.ndarray:
  """uint8 (H, W) classes 0-20 and BORDER of a SegmentationClass palette PNG."""
  mask = images.open_image(io.BytesIO(data), where)
  if mask.mode not in ("P", "L"):
    raise DatasetError(f"{where}: a VOC class mask is a palette PNG, this one is {mask.mode}")
  values = np.asarray(mask)
  bad = (values >= len(CLASS_NAMES)) & (values != BORDER)
  if bad.any():
    raise DatasetError(f"{where}: values {sorted(set(values[bad].tolist()))[:8]} are neither a "
                       f"VOC class (0-20) nor the border value {BORDER}")
  return values


class Voc2012Segmentation(official_files.SegmentationFilesBuilder):
  """PASCAL VOC 2012 images with their class masks (0-20, 255 border)."""

  VERSION = tfds.core.Version("1.0.0")
  FILES = (ARCHIVE,)

  HOMEPAGE = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/"

  def _split_generators(self, dl_manager):
    del dl_manager
    path = self.paths()[ARCHIVE.name]
    lists = dict(official_files.read_tar(path, SPLIT_LISTS.values()))
    return {split: self._generate_examples(path, lists[member].decode().split())
            for split, member in SPLIT_LISTS.items()}

  def _generate_examples(self, path, names):
    """Reads the split's images and masks in one pass; pairs them as they come."""
    wanted = [image_member(n) for n in names] + [mask_member(n) for n in names]
    pending: dict[str, dict[str, bytes]] = {}
    for member, data in official_files.read_tar(path, wanted):
      kind = "mask" if member.endswith(".png") else "image"
      name = member.rsplit("/", 1)[-1].rsplit(".", 1)[0]
      pair = pending.setdefault(name, {})
      pair[kind] = data
      if len(pair) == 2:
        del pending[name]
        where = f"{path}:{image_member(name)}"
        image = official_files.image_to_store(pair["image"], where)
        mask = decode_mask(pair["mask"], f"{path}:{mask_member(name)}")
        yield name, {"image": image, "mask": Image.fromarray(mask, "L"),
                     "file_name": f"{name}.jpg"}


@register("voc2012")
def load(dataset_config: ml_collections.ConfigDict) -> SegmentationData:
  sources.check_ignore_index("voc2012", dataset_config.ignore_index, len(CLASS_NAMES))
  builder = official_files.prepare(Voc2012Segmentation(
      source_dir=dataset_config.source_dir,
      data_dir=tfds_utils.data_dir(dataset_config.data_dir)))
  # Stored values 0..20 are classes; the border (255) and any other value are ignored.
  table = sources.class_table(len(CLASS_NAMES), dataset_config.ignore_index)
  return sources.labelled_splits(builder, dataset_config, table, CLASS_NAMES, tuple(SPLIT_LISTS))
