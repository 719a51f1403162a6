"""The global training stream: the same batches on any topology, resumable from a
global position; repeat-factor sampling's statistics; per-image class counts."""

import json

import numpy as np
import pytest

from segjax import config as config_lib
from segjax.data import class_stats, pipeline, sampling


class IndexedSource:
  """Record i: a noisy 8x8 image and a mask of value i (which record it is)."""

  def __init__(self, size: int):
    self.size = size

  def __len__(self):
    return self.size

  def __repr__(self):
    return f"IndexedSource({self.size})"

  def __getitem__(self, index):
    image = np.random.default_rng(index).integers(0, 256, (8, 8, 3), np.uint8)
    return {"image": image, "mask": np.full((8, 8, 1), index, np.uint8)}


def stream_config(batch_size=8, seed=3):
  config = config_lib.base_config()
  config.dataset.image_size = 8
  config.dataset.augmentations = ("flip", "noise", "brightness")
  config.dataset.noise_prob = 0.5
  config.batch_size = batch_size
  config.seed = seed
  return config


def global_batches(source, config, num_batches, process_count=1, state=None):
  """The first global batches a topology reads: each process's rows, concatenated."""
  streams = [pipeline.train_loader(source, config, process_index=p, process_count=process_count)
             for p in range(process_count)]
  if state is not None:
    for stream in streams:
      stream.set_state(state)
  batches = [[next(stream) for stream in streams] for _ in range(num_batches)]
  return [{key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
          for parts in batches]


def keys(batch):
  return batch["mask"][:, 0, 0].tolist()


def test_global_batches_are_the_same_on_one_and_two_processes():
  source, config = IndexedSource(37), stream_config()
  one = global_batches(source, config, 6)
  two = global_batches(source, config, 6, process_count=2)
  assert [keys(b) for b in two] == [keys(b) for b in one]
  for a, b in zip(one, two):  # Augmentations are drawn per global position too.
    np.testing.assert_array_equal(a["image"], b["image"])
  stream = [key for batch in one for key in keys(batch)]
  order = sampling.ExampleOrder(37, config.seed)
  assert stream == [order.key(g) for g in range(48)]
  assert sorted(stream[:37]) == list(range(37))  # An epoch: every record once,
  assert stream[:37] != list(range(37))          # shuffled,
  assert stream[37:] != stream[:11]              # and differently the next epoch.
  other_seed = global_batches(source, stream_config(seed=4), 1)
  assert keys(other_seed[0]) != keys(one[0])


def test_position_saved_on_two_processes_resumes_on_one():
  source, config = IndexedSource(37), stream_config()
  reference = global_batches(source, config, 5)
  streams = [pipeline.train_loader(source, config, process_index=p, process_count=2)
             for p in range(2)]
  for _ in range(3):
    [next(stream) for stream in streams]
  states = [stream.get_state() for stream in streams]
  assert states[0] == states[1] and json.loads(states[0])["position"] == 24
  resumed = global_batches(source, config, 2, state=states[0])
  for a, b in zip(resumed, reference[3:]):
    np.testing.assert_array_equal(a["mask"], b["mask"])
    np.testing.assert_array_equal(a["image"], b["image"])
  # With another batch size it continues at the next example.
  half = global_batches(source, stream_config(batch_size=4), 2, state=states[0])
  assert keys(half[0]) + keys(half[1]) == keys(reference[3])
  # An older checkpoint's position: global batch k.
  batches = global_batches(source, config, 1, state=json.dumps({"batches": 4}).encode())
  assert keys(batches[0]) == keys(reference[4])


def test_position_of_another_stream_is_refused():
  state = pipeline.train_loader(IndexedSource(37), stream_config()).get_state()
  for source, config, what in (
      (IndexedSource(36), stream_config(), "source 'IndexedSource.37.' saved, 'Indexed.*"
                                           "num_records 37 saved, 36 now"),
      (IndexedSource(37), stream_config(seed=4), "seed 3 saved, 4 now")):
    with pytest.raises(ValueError, match=what):
      pipeline.train_loader(source, config).set_state(state)


def test_repeat_factors_follow_lvis():
  # Class 1 in 2 of 100 images, class 2 in 50, class 0 in all.
  presence = np.zeros((100, 3), bool)
  presence[:, 0] = True
  presence[:2, 1] = True
  presence[50:, 2] = True
  factors = sampling.repeat_factors(presence, threshold=0.08)
  np.testing.assert_allclose(factors[:2], 2.0)  # sqrt(0.08 / 0.02)
  np.testing.assert_allclose(factors[2:], 1.0)  # Classes above the threshold: once.
  sampling.check("repeat_factor", 0.08)
  with pytest.raises(ValueError, match=r"dataset.repeat_threshold=0.0 must be > 0"):
    sampling.check("repeat_factor", 0.0)
  with pytest.raises(ValueError, match=r"dataset.sampler='balanced': use one of uniform, rep"):
    sampling.check("balanced", 0.1)


def test_repeat_factor_stream_statistics():
  """Each record appears r_i times per epoch on average, floor(r_i) or ceil(r_i)
  times in each, and the stream is a function of the seed."""
  factors = np.array([1.0, 1.0, 2.5, 1.2, 4.0] + [1.0] * 15)
  order = sampling.ExampleOrder(20, seed=7, factors=factors)
  epochs = [np.bincount(order.epoch(e), minlength=20) for e in range(400)]
  counts = np.stack(epochs)
  np.testing.assert_array_equal(counts.min(0), np.floor(factors))
  np.testing.assert_array_equal(counts.max(0), np.ceil(factors))
  np.testing.assert_allclose(counts.mean(0), factors, atol=0.06)
  # Positions run through the epochs in turn, whatever their lengths.
  starts = np.concatenate([[0], np.cumsum(counts.sum(1))])
  again = sampling.ExampleOrder(20, seed=7, factors=factors)
  for epoch in (0, 1, 57):
    span = range(starts[epoch], starts[epoch + 1])
    assert [again.key(g) for g in span] == order.epoch(epoch).tolist()
  assert sampling.ExampleOrder(20, 8, factors).epoch(0).tolist() != order.epoch(0).tolist()


def test_class_pixel_counts_are_cached(tmp_path):
  class Masks(IndexedSource):
    def __getitem__(self, index):
      mask = np.zeros((4, 5, 1), np.uint8)
      mask[0, :index] = 2
      mask[1, 0] = 255  # Ignored: counted for no class.
      return {"image": np.zeros((4, 5, 3), np.uint8), "mask": mask}

  counts = class_stats.cached_pixel_counts(Masks(4), 3, 255, str(tmp_path), "masks")
  np.testing.assert_array_equal(counts, [[19, 0, 0], [18, 0, 1], [17, 0, 2], [16, 0, 3]])
  files = list((tmp_path / class_stats.CACHE_FOLDER).iterdir())
  assert len(files) == 1 and files[0].name.startswith("masks_")
  np.save(files[0], counts + 1)  # Read from the file the second time.
  np.testing.assert_array_equal(
      class_stats.cached_pixel_counts(Masks(4), 3, 255, str(tmp_path), "masks"), counts + 1)
