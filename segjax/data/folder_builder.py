"""TFDS builders that write a user's image/mask files as ArrayRecord, checked first.

A `FolderBuilder` subclass lists its examples by split and reads one example;
this base checks every example before anything is written (all problems of
the folder in one `DatasetError`), stores images (RGB JPEG files as their
own bytes, others converted to RGB PNG) and masks (class indices, gray PNG),
and keeps the sorted file order.

Each source folder and set of options gets its own builder config, named by
the folder and a hash of its absolute path, the options and the files' names,
sizes and modification times; so different folders or options never share
prepared data, and editing the files prepares them again.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from segjax.data import images as images_lib
from segjax.data import tfds_utils
from segjax.data.images import DatasetError


class _QuietCustomConfig(logging.Filter):
  """Drops TFDS's warning that a builder config is not predefined: here none is."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Using custom data configuration")


logging.getLogger("absl").addFilter(_QuietCustomConfig())


@dataclasses.dataclass(frozen=True)
class Example:
  key: str                 # File stem; unique within the dataset.
  image_path: str
  mask_paths: tuple[str, ...]


def fingerprint(directory: str) -> str:
  """Hash of every file's relative path, size and modification time under `directory`."""
  digest = hashlib.sha256()
  for root, dirs, files in os.walk(directory):
    dirs.sort()
    for name in sorted(files):
      path = os.path.join(root, name)
      stat = os.stat(path)
      digest.update(f"{os.path.relpath(path, directory)}\0{stat.st_size}\0"
                    f"{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()


def config_name(source_dir: str, options: dict) -> str:
  """`<folder name>_<hash of path, options and file listing>`, a valid TFDS config name."""
  text = json.dumps({"source_dir": source_dir, "options": options,
                     "files": fingerprint(source_dir)}, sort_keys=True, default=str)
  stem = re.sub(r"[^A-Za-z0-9_]+", "_", os.path.basename(source_dir.rstrip(os.sep)))[:40]
  return f"{stem or 'data'}_{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class FolderBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of builders from a folder; subclasses define `list_splits` and `read`."""

  VERSION = tfds.core.Version("1.0.0")

  def __init__(self, *, source_dir: str, options: dict, data_dir: str,
               init_kwargs: dict, config_name_: str | None = None):
    """`init_kwargs`: the subclass's own arguments, to rebuild it when unpickled (in
    grain workers) under the same config name, without listing the folder again."""
    self._init_kwargs = init_kwargs
    if not source_dir:
      raise DatasetError(f"dataset {self.name!r} is built from files: set dataset.source_dir "
                         f"to their folder")
    self.source_dir = os.path.abspath(os.path.expanduser(source_dir))
    if not os.path.isdir(self.source_dir):
      raise DatasetError(f"dataset.source_dir={source_dir!r}: folder not found")
    self.options = options
    config = tfds.core.BuilderConfig(name=config_name_ or config_name(self.source_dir, options),
                                     description=f"from {self.source_dir}")
    super().__init__(data_dir=data_dir, config=config)

  def __getstate__(self):
    return {"init_kwargs": self._init_kwargs, "config_name": self.builder_config.name}

  def __setstate__(self, state):
    self.__init__(**state["init_kwargs"], config_name_=state["config_name"])

  # To define in subclasses.
  def list_splits(self) -> dict[str, list[Example]]:
    raise NotImplementedError

  def read(self, example: Example) -> tuple[Any, np.ndarray]:
    """(image: file bytes or RGB PIL image, mask uint8 (H, W)); DatasetError if bad."""
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(self.__class__.__doc__ or "") + f"\nSource: {self.source_dir}\n"
                    f"Options: {json.dumps(self.options, sort_keys=True, default=str)}",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "mask": tfds.features.Image(shape=(None, None, 1)),
        }),
        disable_shuffling=True,  # Index i of a split is its i-th file in sorted order.
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    splits = self.list_splits()
    empty = [name for name, examples in splits.items() if not examples]
    if empty:
      raise DatasetError(f"{self.source_dir}: split(s) {', '.join(empty)} would have no "
                         f"examples; add files or change dataset.split_ratios")
    self.validate(splits)
    return {name: self._generate_examples(examples) for name, examples in splits.items()}

  def validate(self, splits: dict[str, list[Example]]) -> None:
    """Reads every example; raises one DatasetError listing every bad file."""
    examples = [example for split in splits.values() for example in split]
    problems = []

    def check(example):
      try:
        self.read(example)
      except DatasetError as error:
        return str(error)
      return None

    workers = max(1, min(8, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # PIL decodes without the GIL.
      problems = sorted(p for p in pool.map(check, examples) if p is not None)
    if problems:
      raise DatasetError(images_lib.summarize(
          problems, f"dataset {self.name!r} from {self.source_dir} cannot be prepared"))

  def _generate_examples(self, examples: Sequence[Example]) -> Iterator[tuple[str, dict]]:
    for example in examples:
      image, mask = self.read(example)
      yield example.key, {"image": image, "mask": Image.fromarray(mask, "L")}


def read_image(path: str) -> tuple[Any, Image.Image]:
  """(what to store: the file's bytes or a converted RGB image, the decoded image)."""
  image = images_lib.open_image(path)
  if images_lib.is_stored_as_is(image):
    with open(path, "rb") as f:
      return f.read(), image
  return images_lib.to_rgb(image, path), image


def prepare(builder: FolderBuilder) -> FolderBuilder:
  """Prepares once; after a failure nothing of this attempt is left in the data dir."""
  if builder.is_prepared():
    return builder
  root = builder.data_dir_root
  config_dir = os.path.dirname(builder.data_dir)
  # Folders TFDS may create, innermost first.
  created = [os.path.join(root, "downloads", "extracted"), os.path.join(root, "downloads"),
             config_dir, os.path.dirname(config_dir), root]
  existed = {path for path in created if os.path.exists(path)}
  try:
    return tfds_utils.prepare(builder)
  except BaseException:
    _remove_incomplete(config_dir, builder.data_dir)
    for path in created:
      if path not in existed and os.path.isdir(path) and not os.listdir(path):
        os.rmdir(path)
    raise


def _remove_incomplete(parent: str, final_dir: str) -> None:
  if os.path.isdir(final_dir) and not os.path.exists(os.path.join(final_dir,
                                                                  "dataset_info.json")):
    shutil.rmtree(final_dir, ignore_errors=True)
  if os.path.isdir(parent):
    for name in os.listdir(parent):
      if name.startswith("incomplete."):
        shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
