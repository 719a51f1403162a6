"""Record sources that wrap others: label mapping, grayscale, class names.

They are plain picklable classes, so grain worker processes can use them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, Sequence

import jax
import numpy as np
from PIL import Image

from segjax.data.images import DatasetError
from segjax.data.record_source import RecordSource, SegmentationData

# Of the official train split, held out as validation where a dataset has none.
VALIDATION_FRACTION = 0.1
_logged: set[str] = set()


def mask_like_image(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
  """The mask (H', W', 1) resized with nearest neighbour to the image's (H, W)."""
  height, width = image.shape[:2]
  if mask.shape[:2] == (height, width):
    return mask
  resized = Image.fromarray(np.ascontiguousarray(mask[..., 0])).resize((width, height),
                                                                      Image.NEAREST)
  return np.asarray(resized)[..., None]


class LabelMapSource:
  """Maps mask values through a 256-entry table; resizes a mask of another size."""

  def __init__(self, source: RecordSource, table: np.ndarray, mask_key: str = "mask"):
    self.source = source
    self.table = np.asarray(table, np.uint8)
    self.mask_key = mask_key
    if self.table.shape != (256,):
      raise ValueError(f"label table must have 256 entries, got {self.table.shape}")

  def __len__(self) -> int:
    return len(self.source)

  def __repr__(self) -> str:
    # Grain checks a checkpointed loader position against repr(source): it must
    # not change between runs (no object addresses).
    table = hashlib.sha256(self.table.tobytes()).hexdigest()[:16]
    return f"LabelMapSource({self.source!r}, table={table}, mask_key={self.mask_key!r})"

  def __getitem__(self, index: int) -> dict:
    record = self.source[index]
    image = np.asarray(record["image"])
    if image.ndim == 2:
      image = image[..., None]
    mask = np.asarray(record[self.mask_key])
    if mask.ndim == 2:
      mask = mask[..., None]
    mask = self.table[mask]
    return {"image": image, "mask": mask_like_image(mask, image)}


class GrayscaleSource:
  """Images as one channel: ITU-R 601-2 luma, L = (299 R + 587 G + 114 B) / 1000 (PIL's)."""

  def __init__(self, source: RecordSource):
    self.source = source

  def __len__(self) -> int:
    return len(self.source)

  def __repr__(self) -> str:  # Stable between runs, as LabelMapSource's.
    return f"GrayscaleSource({self.source!r})"

  def __getitem__(self, index: int) -> dict:
    record = dict(self.source[index])
    image = np.asarray(record["image"])
    if image.ndim == 3 and image.shape[-1] == 3:
      image = np.asarray(Image.fromarray(image).convert("L"))[..., None]
    elif image.ndim == 2:
      image = image[..., None]
    record["image"] = image
    return record


def to_grayscale(data: SegmentationData) -> SegmentationData:
  """The same dataset with one-channel images (`dataset.grayscale=True`)."""
  return dataclasses.replace(data, train=GrayscaleSource(data.train),
                             eval=GrayscaleSource(data.eval), num_channels=1)


def class_names(names: Sequence[str], num_classes: int) -> tuple[str, ...]:
  """`dataset.class_names`, or class_0 ... class_{n-1} when it is empty."""
  names = tuple(str(name) for name in names)
  if not names:
    return tuple(f"class_{i}" for i in range(num_classes))
  if len(names) != num_classes:
    raise DatasetError(f"dataset.class_names has {len(names)} names but "
                       f"dataset.num_classes={num_classes}: give one name per class")
  return names


def choose_target(dataset: str, target: str, targets: dict, default: str) -> str:
  """`dataset.target` ("" = the dataset's default), checked against `targets`."""
  target = target or default
  if target not in targets:
    raise DatasetError(f"dataset.target={target!r} is not a target of {dataset!r}; "
                       f"choose one of {', '.join(targets)} (or '' for {default!r})")
  return target


class SubsetSource:
  """Records `indices` of `source`, in that order: a part of a split held out from it."""

  def __init__(self, source: RecordSource, indices: Sequence[int], name: str):
    self.source, self.name = source, name
    self.indices = np.asarray(indices, np.int64)

  def __len__(self) -> int:
    return len(self.indices)

  def __repr__(self) -> str:  # Stable between runs, as LabelMapSource's.
    digest = hashlib.sha256(self.indices.tobytes()).hexdigest()[:16]
    return f"SubsetSource({self.source!r}, {self.name}, n={len(self)}, indices={digest})"

  def __getitem__(self, index: int) -> dict:
    return self.source[int(self.indices[index])]


def held_out_indices(count: int, seed: int,
                     fraction: float = VALIDATION_FRACTION) -> tuple[np.ndarray, np.ndarray]:
  """(train, validation): sorted, disjoint indices of a split of `count` examples.

  Validation is round(fraction * count) of them (at least 1, leaving at least 1
  for training), the first of a permutation drawn from `seed`: the same count
  and seed always give the same parts.
  """
  if count < 2:
    raise DatasetError(f"the train split has {count} example(s): too few to hold out a "
                       "validation split from it")
  held = min(count - 1, max(1, round(fraction * count)))
  order = np.random.default_rng(seed).permutation(count)
  return np.sort(order[held:]), np.sort(order[:held])


def log_held_out(dataset: str, seed: int, parts: dict[str, tuple[int, int]]) -> None:
  """One line, on process 0, once per process: the sizes of a held-out validation split;
  `parts` maps what was split ("examples") to its (train, validation) sizes."""
  sizes = ", ".join(f"{train} train / {validation} validation {what}"
                    for what, (train, validation) in parts.items())
  message = (f"{dataset} has no validation split: {VALIDATION_FRACTION:.0%} of its train split "
             f"is held out as validation (dataset.split_seed={seed}): {sizes}")
  if message not in _logged and jax.process_index() == 0:
    print(message, flush=True)
  _logged.add(message)


def open_split(name: str, available: Sequence[str], open_official: Callable[[str], RecordSource],
               dataset: str, seed: int) -> RecordSource:
  """Split `name` of a dataset whose official splits are `available`; `open_official(split)`
  opens one of them.

  Where the official data has no validation split, "validation" is a held-out
  VALIDATION_FRACTION of the official train split (`held_out_indices` with
  `seed`, dataset.split_seed) and "train" is the rest: choosing a checkpoint on
  "validation" never looks at test examples, and training never sees validation ones.
  """
  if "validation" in available or name not in ("train", "validation"):
    return open_official(name)
  train = open_official("train")
  kept, held = held_out_indices(len(train), seed)
  log_held_out(dataset, seed, {"examples": (len(kept), len(held))})
  return SubsetSource(train, held, "validation") if name == "validation" else SubsetSource(
      train, kept, "train")


def check_ignore_index(dataset: str, ignore_index: int, num_classes: int) -> None:
  """A dataset whose stored values are classes 0..num_classes-1 cannot ignore one of them."""
  if ignore_index < num_classes:
    raise DatasetError(f"dataset.ignore_index={ignore_index} is a class of {dataset!r}: use a "
                       f"value >= {num_classes}")


def class_table(num_classes: int, ignore_index: int) -> np.ndarray:
  """uint8 (256,): stored values 0..num_classes-1 are their class, any other is ignored."""
  table = np.full(256, ignore_index, np.uint8)
  table[:num_classes] = np.arange(num_classes)
  return table


def labelled_splits(builder, dataset_config, table: np.ndarray, class_names: Sequence[str],
                    available: Sequence[str]) -> SegmentationData:
  """The configured train and eval splits of a prepared TFDS builder, mask values mapped
  through `table`; `available` names the builder's splits (`open_split`: without a
  validation split, one is held out of train)."""
  from segjax.data import tfds_utils  # Imports tensorflow_datasets: only where it is used.

  def split(name: str) -> LabelMapSource:
    return LabelMapSource(open_split(name, available,
                                     lambda official: tfds_utils.open_split(builder, official),
                                     dataset_config.name, dataset_config.split_seed), table)

  return SegmentationData(
      train=split(dataset_config.train_split), eval=split(dataset_config.eval_split),
      num_classes=len(class_names), class_names=tuple(class_names), num_channels=3,
      ignore_index=dataset_config.ignore_index)
