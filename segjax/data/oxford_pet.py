"""`oxford_iiit_pet`: the Oxford-IIIT Pet trimaps, from the official archives, as ArrayRecord.

Files (www.robots.ox.ac.uk/~vgg/data/pets/): `images.tar.gz` (images/NAME.jpg)
and `annotations.tar.gz` (annotations/trimaps/NAME.png, annotations/trainval.txt,
annotations/test.txt), read from `dataset.source_dir` when set, else downloaded
into `dataset.data_dir`/downloads with their checksums checked
(segjax.data.official_files); no TensorFlow. Prepared once in `dataset.data_dir`.
Splits: test (test.txt, 3669), validation (368 of the 3680 of trainval.txt, held out
by `dataset.split_seed`: segjax.data.sources.held_out_indices, as the dataset has
none) and train (the other 3312). Images that are not RGB JPEG (a few PNG, gray,
CMYK or RGBA files named .jpg) are stored as RGB, and the samples TFDS lists as
corrupt (JPEG data errors) are re-encoded, as TFDS's own builder does.
Trimap values 1 = pet, 2 = background, 3 = border. `dataset.target`:
  trimap (default)  3 classes: 0 background, 1 pet, 2 border
  binary            2 classes: 0 background, 1 pet; border pixels are
                    `dataset.ignore_index`
Any other mask value (none in the real data) becomes `dataset.ignore_index`,
and a mask whose size differs from its image's is resized to it (nearest).
"""

from __future__ import annotations

import io
import os

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from segjax.data import images, official_files, sources, tfds_utils
from segjax.data.images import DatasetError
from segjax.data.official_files import OfficialFile
from segjax.data.registry import SegmentationData, register

NAME = "oxford_iiit_pet"
PET, BACKGROUND, BORDER = 1, 2, 3  # Trimap values.
TARGETS = {
    "trimap": ("background", "pet", "border"),
    "binary": ("background", "pet"),
}
_URL = "https://thor.robots.ox.ac.uk/~vgg/data/pets"  # As TFDS 4.9.10 and its checksums.
IMAGES = OfficialFile("images.tar.gz", f"{_URL}/images.tar.gz", 791918971,
                      "67195c5e1c01f1ab5f9b6a5d22b8c27a580d896ece458917e61d459337fa318d")
ANNOTATIONS = OfficialFile("annotations.tar.gz", f"{_URL}/annotations.tar.gz", 19173078,
                           "52425fb6de5c424942b7626b428656fcbd798db970a937df61750c0f1d358e91")
SPLIT_LISTS = {"train": "annotations/trainval.txt", "test": "annotations/test.txt"}
# Samples whose JPEG data is corrupt: TFDS decodes and re-encodes them (its list).
CORRUPT_SAMPLES = frozenset((
    "beagle_116", "chihuahua_121", "Abyssinian_5", "Abyssinian_34", "Egyptian_Mau_14",
    "Egyptian_Mau_139", "Egyptian_Mau_145", "Egyptian_Mau_156", "Egyptian_Mau_167",
    "Egyptian_Mau_177", "Egyptian_Mau_186", "Egyptian_Mau_191"))


def read_split_list(text: bytes, where: str) -> list[str]:
  """Image names of a split list: lines `NAME CLASS_ID SPECIES BREED_ID`."""
  names = []
  for number, line in enumerate(text.decode().splitlines(), start=1):
    if not line.strip() or line.startswith("#"):
      continue
    fields = line.split()
    if len(fields) != 4:
      raise DatasetError(f"{where} line {number}: expected 'NAME CLASS_ID SPECIES BREED_ID', "
                         f"got {line!r}; the archive is not the official one")
    names.append(fields[0])
  return names


class OxfordIiitPetTrimaps(official_files.SegmentationFilesBuilder):
  """Oxford-IIIT Pet images with their trimaps (1 pet, 2 background, 3 border)."""

  VERSION = tfds.core.Version("1.0.0")
  FILES = (IMAGES, ANNOTATIONS)

  HOMEPAGE = "https://www.robots.ox.ac.uk/~vgg/data/pets/"

  def _split_generators(self, dl_manager):
    del dl_manager
    paths = self.paths()
    annotations = paths[ANNOTATIONS.name]
    lists = dict(official_files.read_tar(annotations, SPLIT_LISTS.values()))
    names = {split: read_split_list(lists[member], f"{annotations}:{member}")
             for split, member in SPLIT_LISTS.items()}
    trimaps = dict(official_files.read_tar(
        annotations, {f"annotations/trimaps/{n}.png" for split in names.values() for n in split}))
    return {split: self._generate_examples(paths[IMAGES.name], split_names, trimaps,
                                           annotations)
            for split, split_names in names.items()}

  def _generate_examples(self, images_path, names, trimaps, annotations_path):
    members = [f"images/{name}.jpg" for name in names]
    for member, data in official_files.read_tar(images_path, members):
      name = os.path.splitext(os.path.basename(member))[0]
      where = f"{images_path}:{member}"
      image = official_files.image_to_store(data, where, reencode=name in CORRUPT_SAMPLES)
      trimap_member = f"annotations/trimaps/{name}.png"
      trimap = images.open_image(io.BytesIO(trimaps[trimap_member]),
                                 f"{annotations_path}:{trimap_member}")
      if trimap.mode not in ("L", "P"):
        raise DatasetError(f"{annotations_path}:{trimap_member}: a trimap is an 8-bit "
                           f"one-channel PNG, this one is {trimap.mode}")
      mask = Image.fromarray(np.asarray(trimap), "L")
      yield name, {"image": image, "mask": mask, "file_name": f"{name}.jpg"}


def label_table(target: str, ignore_index: int) -> np.ndarray:
  """uint8 (256,): trimap value -> class."""
  table = np.full(256, ignore_index, np.uint8)
  table[BACKGROUND], table[PET] = 0, 1
  table[BORDER] = 2 if target == "trimap" else ignore_index
  return table


@register(NAME)
def load(dataset_config: ml_collections.ConfigDict) -> SegmentationData:
  target = sources.choose_target(NAME, dataset_config.target, TARGETS, "trimap")
  names = TARGETS[target]
  sources.check_ignore_index(NAME, dataset_config.ignore_index, len(names))
  table = label_table(target, dataset_config.ignore_index)
  builder = official_files.prepare(OxfordIiitPetTrimaps(
      source_dir=dataset_config.source_dir,
      data_dir=tfds_utils.data_dir(dataset_config.data_dir)))
  return sources.labelled_splits(builder, dataset_config, table, names, tuple(SPLIT_LISTS))
