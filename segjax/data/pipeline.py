"""grain input pipelines: one global stream sharded over JAX processes, deterministic,
checkpointable.

Batches stay uint8 on the host (images (B, H, W, C), masks (B, H, W)) and are
normalised on the device, which moves 4x fewer bytes than float32.
"""

from __future__ import annotations

import json
from typing import Sequence

from absl import flags
import grain
import jax
import ml_collections
import numpy as np
from PIL import Image

from segjax.data import augment, class_stats, resampling, sampling
from segjax.data.registry import RecordSource, SegmentationData


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
  """Resizes to (height, width): the image with `resampling.resize_image` (bilinear,
  antialiased when shrinking: what inference does at its test sizes), the mask nearest."""
  image, mask = record["image"], record["mask"]
  if image.shape[:2] == size and mask.shape[:2] == size:
    return record
  height, width = size
  image = resampling.resize_image(image, size)
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


def local_batch_size(global_batch_size: int, key: str = "batch_size",
                     process_count: int | None = None) -> int:
  """Each process's rows of a global batch (`process_count`: default JAX's)."""
  process_count = jax.process_count() if process_count is None else process_count
  if global_batch_size % process_count:
    raise ValueError(f"{key}={global_batch_size} must divide by the number of JAX processes "
                     f"({process_count})")
  return global_batch_size // process_count


def synthetic_batch(batch_size: int, height: int, width: int, channels: int, num_classes: int,
                    seed: int = 0) -> dict:
  """A host batch as the loaders yield it (uint8 images and masks), of random values."""
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 256, (batch_size, height, width, channels), np.uint8),
          "mask": rng.integers(0, num_classes, (batch_size, height, width), np.uint8)}


def example_order(data: SegmentationData, config: ml_collections.ConfigDict
                  ) -> sampling.ExampleOrder:
  """The training stream's order of `data.train`'s records (`dataset.sampler`)."""
  sampler, threshold = config.dataset.sampler, config.dataset.repeat_threshold
  sampling.check(sampler, threshold)
  if sampler == "uniform":
    return sampling.ExampleOrder(len(data.train), config.seed)
  counts = class_stats.cached_pixel_counts(data.train, data.num_classes, data.ignore_index,
                                           config.dataset.data_dir, config.dataset.name)
  return sampling.ExampleOrder(len(data.train), config.seed,
                               sampling.repeat_factors(counts > 0, threshold))


class _LoadExample:
  """Global stream position -> the example there, prepared and augmented with
  the generator of that position (the same on any process or worker)."""

  def __init__(self, source: RecordSource, order: sampling.ExampleOrder, operations: list):
    self.source, self.order, self.operations = source, order, operations

  def __call__(self, position: int) -> dict:
    record = self.source[self.order.key(position)]
    rng = sampling.example_rng(self.order.seed, position)
    for operation in self.operations:
      if isinstance(operation, grain.transforms.RandomMap):
        record = operation.random_map(record, rng)
      else:
        record = operation.map(record)
    return record


class TrainStream:
  """An endless iterator over this process's rows of each global training batch.

  Global batch k is the examples at stream positions [k B, (k + 1) B)
  (segjax.data.sampling) whatever the number of processes, devices and grain
  workers; this process loads only its rows of it. The checkpointable state is
  a global position (`get_state`/`set_state`, JSON bytes), so a run resumes with
  the next batch on any topology.

  Yields {"image": uint8 (B / processes, H, W, C), "mask": uint8 (B / processes, H, W)}.
  """

  def __init__(self, source: RecordSource, config: ml_collections.ConfigDict,
               order: sampling.ExampleOrder, process_index: int | None = None,
               process_count: int | None = None):
    self.batch_size = config.batch_size
    self.order = order
    self._process_index = jax.process_index() if process_index is None else process_index
    self._local_batch_size = local_batch_size(config.batch_size, process_count=process_count)
    self._load = _LoadExample(source, order, [_first_operation(config.dataset),
                                              _Augment(config.dataset), _ToBatchFields()])
    self._num_workers = config.dataset.num_workers
    # Sources describe themselves stably (no addresses), so this names the split.
    self._stream = {"source": repr(source), **order.describe()}
    self._start(0)

  def _start(self, position: int) -> None:
    self.position = position  # Of the first example of the next batch.
    positions = sampling.ProcessPositions(position, self.batch_size, self._local_batch_size,
                                          self._process_index)
    # Batched before the iterator: grain's workers and threads each build whole
    # batches, so their number changes neither the batches nor their order.
    dataset = grain.MapDataset.source(positions).map(self._load).batch(
        positions.local_batch_size, drop_remainder=True)
    dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=4, prefetch_buffer_size=8))
    if self._num_workers:
      if not flags.FLAGS.is_parsed():  # grain reads its absl flags; unparsed outside absl.app.
        flags.FLAGS.mark_as_parsed()
      dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=self._num_workers))
    self._iterator = iter(dataset)

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    batch = next(self._iterator)
    self.position += self.batch_size
    return batch

  def get_state(self) -> bytes:
    """The global position of the next batch, and what fixes the stream."""
    return json.dumps({"position": self.position, **self._stream}).encode()

  def set_state(self, state: bytes) -> None:
    """Continues at a saved global position (saved with any batch size and topology).

    `{"batches": k}` alone (what an older checkpoint of step k gives) starts
    global batch k of this stream. Raises ValueError when the saved stream is
    another one: another dataset or split, seed or sampler.
    """
    saved = json.loads(state)
    if set(saved) == {"batches"}:
      self._start(int(saved["batches"]) * self.batch_size)
      return
    differing = {key: (saved.get(key), value) for key, value in self._stream.items()
                 if saved.get(key) != value}
    if differing:
      raise ValueError("the saved data position is of another training stream: " + ", ".join(
          f"{key} {old!r} saved, {new!r} now" for key, (old, new) in differing.items()))
    self._start(int(saved["position"]))


def train_loader(source: RecordSource, config: ml_collections.ConfigDict,
                 order: sampling.ExampleOrder | None = None, **process) -> TrainStream:
  """This process's shard of each global batch: endless, shuffled, augmented.

  `order`: default, every record once per epoch (`example_order` builds the
  configured one); `process`: `process_index`, `process_count` of a
  simulated topology (default JAX's). See `TrainStream`.
  """
  return TrainStream(source, config, order or sampling.ExampleOrder(len(source), config.seed),
                     **process)
