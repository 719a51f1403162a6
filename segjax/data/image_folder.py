"""`image_folder`: a segmentation dataset from your own image and mask files.

Layouts of `dataset.source_dir` (one or the other):

  DIR/train/images/  DIR/train/masks/      split folders: train, val (or
  DIR/val/images/    DIR/val/masks/        validation) and test, each optional
  DIR/test/images/   DIR/test/masks/       but none empty; val -> "validation"

  DIR/images/  DIR/masks/                  one pair, split into train,
                                           validation and test by
                                           `dataset.split_ratios` after a
                                           shuffle of the sorted file list by
                                           `dataset.split_seed` (reproducible),
                                           or as `dataset.split_file` lists

`dataset.split_file`: a CSV file with a header, a `name` column (the file
name without extension) and a split column (`dataset.split_column`) whose
values are train, val, validation or test. Pairs it does not list are left
out; a listed name without an image and mask is an error. Whatever the layout,
without a validation split 10% of train is held out as one by
`dataset.split_seed` (segjax.data.sources.open_split), never taken from test.

An image and its mask share a file name without extension (`cat1.jpg` and
`cat1.png`). Image modes, mask encodings (`dataset.mask_encoding`) and the
checks made: `segjax.data.images`. Labels: `dataset.num_classes`,
`dataset.class_names` (empty: class_0, class_1, ...), `dataset.ignore_index`.

The folder is checked and written once to `dataset.data_dir` as ArrayRecord;
a bad file stops preparation with a `DatasetError` listing every bad file, and
nothing is left in the data dir.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os

import ml_collections

from segjax.data import folder_builder, images, sources, tfds_utils
from segjax.data.folder_builder import Example
from segjax.data.images import DatasetError
from segjax.data.registry import SegmentationData, register

SPLIT_FOLDERS = {"train": "train", "val": "validation", "validation": "validation",
                 "test": "test"}
RATIO_SPLITS = ("train", "validation", "test")


class ImageFolderSegmentation(folder_builder.FolderBuilder):
  """Segmentation images and masks from a folder."""

  def __init__(self, *, source_dir: str, mask_options: images.MaskOptions,
               split_ratios=(0.8, 0.1, 0.1), split_seed: int = 0, split_file: str = "",
               split_column: str = "split", data_dir: str, config_name_: str | None = None):
    init_kwargs = dict(source_dir=source_dir, mask_options=mask_options,
                       split_ratios=split_ratios, split_seed=split_seed, split_file=split_file,
                       split_column=split_column, data_dir=data_dir)
    self.mask_options = mask_options
    self.split_ratios = tuple(float(r) for r in split_ratios)
    self.split_seed = int(split_seed)
    self.split_file = os.path.abspath(os.path.expanduser(split_file)) if split_file else ""
    self.split_column = split_column
    options = {"mask": dataclasses.asdict(mask_options), "split_ratios": self.split_ratios,
               "split_seed": self.split_seed}
    if self.split_file:
      options["split_file"] = {"column": split_column, "sha256": _file_sha256(self.split_file)}
    super().__init__(source_dir=source_dir, options=options, data_dir=data_dir,
                     init_kwargs=init_kwargs, config_name_=config_name_)

  def list_splits(self) -> dict[str, list[Example]]:
    root = self.source_dir
    split_dirs = [name for name in SPLIT_FOLDERS if os.path.isdir(os.path.join(root, name))]
    has_pair = any(os.path.isdir(os.path.join(root, name)) for name in ("images", "masks"))
    if split_dirs and self.split_file:
      raise DatasetError(f"dataset.split_file is set but {root} has split folders "
                         f"({', '.join(split_dirs)}): it needs one images/ + masks/ pair")
    if split_dirs and has_pair:
      raise DatasetError(f"{root} has both split folders ({', '.join(split_dirs)}) and "
                         f"images/ or masks/ at the top: use one layout")
    if {"val", "validation"} <= set(split_dirs):
      raise DatasetError(f"{root} has both val/ and validation/: keep one")
    if split_dirs:
      return {SPLIT_FOLDERS[name]: self._pairs(os.path.join(root, name))
              for name in split_dirs}
    if has_pair and self.split_file:
      return split_by_file(self._pairs(root), self.split_file, self.split_column)
    if has_pair:
      parts = images.split_by_ratios(self._pairs(root), self.split_ratios, RATIO_SPLITS,
                                     seed=self.split_seed)
      return {name: parts[name] for name, ratio in zip(RATIO_SPLITS, self.split_ratios)
              if ratio > 0}
    raise DatasetError(f"dataset.source_dir={root} has neither images/ + masks/ nor split "
                       f"folders train/, val/, test/ (each with images/ and masks/)")

  @staticmethod
  def _pairs(directory: str) -> list[Example]:
    image_dir, mask_dir = os.path.join(directory, "images"), os.path.join(directory, "masks")
    pairs = images.match_pairs(images.list_image_files(image_dir),
                               images.list_image_files(mask_dir), image_dir, mask_dir)
    return [Example(stem, image_path, (mask_path,)) for stem, image_path, mask_path in pairs]

  def read(self, example: Example):
    stored, image = folder_builder.read_image(example.image_path)
    mask_path = example.mask_paths[0]
    mask_image = images.open_image(mask_path)
    images.check_same_size(image, example.image_path, mask_image, mask_path)
    return stored, images.decode_mask(mask_image, mask_path, self.mask_options)


def _file_sha256(path: str) -> str:
  try:
    with open(path, "rb") as f:
      return hashlib.sha256(f.read()).hexdigest()
  except OSError as e:
    raise DatasetError(f"dataset.split_file={path}: cannot read it ({e.strerror})") from e


def split_by_file(examples: list[Example], split_file: str,
                  split_column: str) -> dict[str, list[Example]]:
  """The examples each split of `split_file` (CSV: name, split column) lists, in its order."""
  by_name = {example.key: example for example in examples}
  with open(split_file, newline="") as f:
    reader = csv.DictReader(f)
    missing = [c for c in ("name", split_column) if c not in (reader.fieldnames or ())]
    if missing:
      raise DatasetError(f"dataset.split_file={split_file}: no column {', '.join(missing)} "
                         f"(columns: {', '.join(reader.fieldnames or ())}); set "
                         f"dataset.split_column to the one that holds the split")
    splits: dict[str, list[Example]] = {}
    seen = set()
    for line, row in enumerate(reader, start=2):
      name, value = row["name"].strip(), (row[split_column] or "").strip()
      split = SPLIT_FOLDERS.get(value.lower())
      if split is None:
        raise DatasetError(f"{split_file}:{line}: {split_column}={value!r}, expected one of "
                           f"{', '.join(SPLIT_FOLDERS)}")
      if name not in by_name:
        raise DatasetError(f"{split_file}:{line}: {name!r} has no image and mask in "
                           f"images/ and masks/")
      if name in seen:
        raise DatasetError(f"{split_file}:{line}: {name!r} is listed twice")
      seen.add(name)
      splits.setdefault(split, []).append(by_name[name])
  if not splits:
    raise DatasetError(f"dataset.split_file={split_file} lists no files")
  return splits


@register("image_folder")
def load(dataset_config: ml_collections.ConfigDict) -> SegmentationData:
  mask_options = images.MaskOptions.from_config(dataset_config)
  names = sources.class_names(dataset_config.class_names, mask_options.num_classes)
  builder = folder_builder.prepare(ImageFolderSegmentation(
      source_dir=dataset_config.source_dir, mask_options=mask_options,
      split_ratios=dataset_config.split_ratios, split_seed=dataset_config.split_seed,
      split_file=dataset_config.split_file, split_column=dataset_config.split_column,
      data_dir=tfds_utils.data_dir(dataset_config.data_dir)))
  available = tuple(builder.info.splits.keys())
  split = lambda name: sources.open_split(
      name, available, lambda official: tfds_utils.open_split(builder, official), "image_folder",
      dataset_config.split_seed)
  return SegmentationData(
      train=split(dataset_config.train_split), eval=split(dataset_config.eval_split),
      num_classes=mask_options.num_classes, class_names=names, num_channels=3,
      ignore_index=mask_options.ignore_index)

