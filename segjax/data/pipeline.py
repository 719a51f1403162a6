"""grain input pipelines: sharded per JAX process, deterministic, checkpointable.

Batches stay uint8 on the host (images (B, H, W, C), masks (B, H, W)) and are
normalised on the device, which moves 4x fewer bytes than float32.
"""

from __future__ import annotations

from typing import Sequence

import grain
import jax
import ml_collections
import numpy as np
from PIL import Image

from segjax.data import augment
from segjax.data.registry import RecordSource


def image_size(dataset_config: ml_collections.ConfigDict) -> tuple[int, int]:
  size = dataset_config.image_size
  if isinstance(size, int):
    return size, size
  height, width = size
  return int(height), int(width)


def rescale_factor(height: int, width: int, scale: Sequence[int]) -> float:
  """Factor that fits (height, width) into `scale` = (long side, short side) keeping the
  aspect ratio (mmsegmentation's keep-ratio `Resize`); 1 when `scale` is empty."""
  if not scale:
    return 1.0
  long_side, short_side = (float(v) for v in scale)
  return min(long_side / max(height, width), short_side / min(height, width))


def resize(record: dict, size: tuple[int, int]) -> dict:
  """Resizes to (height, width): bilinear for the image, nearest for the mask."""
  image, mask = record["image"], record["mask"]
  if image.shape[:2] == size and mask.shape[:2] == size:
    return record
  height, width = size
  pil_image = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  image = np.asarray(pil_image.resize((width, height), Image.BILINEAR))
  mask = np.asarray(Image.fromarray(mask[..., 0]).resize((width, height), Image.NEAREST))
  return {"image": image.reshape(height, width, -1), "mask": mask[..., None]}


def standard_record(record: dict) -> dict:
  image, mask = np.asarray(record["image"]), np.asarray(record["mask"])
  if image.ndim == 2:
    image = image[..., None]
  if mask.ndim == 2:
    mask = mask[..., None]
  return {"image": image, "mask": mask}


class _Prepare(grain.transforms.Map):
  def __init__(self, size):
    self.size = size

  def map(self, record):
    return resize(standard_record(record), self.size)


class _RescaleCrop(grain.transforms.RandomMap):
  """keep_ratio: rescale (aspect kept) and random crop of the training size."""

  def __init__(self, dataset_config):
    self.config = dataset_config
    self.size = image_size(dataset_config)
    self.scale = tuple(dataset_config.scale)

  def random_map(self, record, rng: np.random.Generator):
    record = standard_record(record)
    factor = rescale_factor(*record["image"].shape[:2], self.scale)
    return augment.rescale_crop(record, rng, self.config, self.size, factor)


def _first_operation(dataset_config):
  """How a record becomes a training-size record, by `dataset.resize`."""
  policy = dataset_config.get("resize", "squash")
  if policy == "squash":
    return _Prepare(image_size(dataset_config))
  if policy == "keep_ratio":
    return _RescaleCrop(dataset_config)
  raise ValueError(f"dataset.resize={policy!r}: use squash or keep_ratio")


class _Augment(grain.transforms.RandomMap):
  def __init__(self, dataset_config):
    self.config = dataset_config
    self.functions = [augment.get(name) for name in dataset_config.augmentations]

  def random_map(self, record, rng: np.random.Generator):
    for function in self.functions:
      record = function(record, rng, self.config)
    return record


class _ToBatchFields(grain.transforms.Map):
  def map(self, record):
    return {"image": np.ascontiguousarray(record["image"]),
            "mask": np.ascontiguousarray(record["mask"][..., 0])}


def local_batch_size(global_batch_size: int, key: str = "batch_size") -> int:
  if global_batch_size % jax.process_count():
    raise ValueError(f"{key}={global_batch_size} must divide by the number of JAX processes "
                     f"({jax.process_count()})")
  return global_batch_size // jax.process_count()


def synthetic_batch(batch_size: int, height: int, width: int, channels: int, num_classes: int,
                    seed: int = 0) -> dict:
  """A host batch as the loaders yield it (uint8 images and masks), of random values."""
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 256, (batch_size, height, width, channels), np.uint8),
          "mask": rng.integers(0, num_classes, (batch_size, height, width), np.uint8)}


def train_loader(source: RecordSource, config: ml_collections.ConfigDict) -> grain.DataLoader:
  """An endless, shuffled, augmented loader of this process's shard of each global batch."""
  data = config.dataset
  sampler = grain.samplers.IndexSampler(
      num_records=len(source), shard_options=grain.sharding.ShardByJaxProcess(drop_remainder=True),
      shuffle=True, num_epochs=None, seed=config.seed)
  return grain.DataLoader(
      data_source=source, sampler=sampler,
      operations=[_first_operation(data), _Augment(data), _ToBatchFields(),
                  grain.transforms.Batch(local_batch_size(config.batch_size), drop_remainder=True)],
      worker_count=data.num_workers)
