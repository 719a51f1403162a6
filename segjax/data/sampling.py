"""The order of training examples: one global stream, the same on any topology.

Position g = 0, 1, 2, ... of the stream is the g-th example a run trains on;
global batch k is positions [k B, (k + 1) B) for the global batch size B, and
process p of P loads only its rows of it, positions k B + p B/P ... k B +
(p + 1) B/P - 1. Which record each position holds depends on the seed and the
dataset only, so every topology trains on the same batches, in the same order,
and a run resumes anywhere from a global position.

The stream is a sequence of epochs, each drawn from (seed, epoch):
  uniform        every record once, shuffled;
  repeat_factor  record i `floor(r_i)` times plus once more with probability
                 `r_i - floor(r_i)` (stochastic rounding, drawn again each
                 epoch), shuffled; r_i = max(1, max over the classes c in
                 record i of sqrt(t / f_c)), f_c the fraction of records
                 containing class c and t `dataset.repeat_threshold`: the
                 repeat-factor sampling of LVIS (Gupta et al. 2019, sec. 4.1).
Batches run across epoch ends (no example is dropped).
"""

from __future__ import annotations

import bisect
import hashlib
import threading

import numpy as np

SAMPLERS = ("uniform", "repeat_factor")

# Stream tags keep the random draws of different purposes apart.
_SHUFFLE, _ROUNDING, _EXAMPLE = 1, 2, 3


def _rng(seed: int, *words: int) -> np.random.Generator:
  return np.random.default_rng([seed % 2**64, *words])


def example_rng(seed: int, position: int) -> np.random.Generator:
  """The generator of the example at global `position` (its augmentations):
  the same whichever process, worker or thread loads it."""
  return _rng(seed, _EXAMPLE, position)


def check(sampler: str, repeat_threshold: float) -> None:
  """A ValueError naming the key when `dataset.sampler` or its option is unusable."""
  if sampler not in SAMPLERS:
    raise ValueError(f"dataset.sampler={sampler!r}: use one of {', '.join(SAMPLERS)}")
  if sampler == "repeat_factor" and not repeat_threshold > 0:
    raise ValueError(f"dataset.repeat_threshold={repeat_threshold!r} must be > 0 (e.g. 0.1: "
                     "classes in fewer than 10% of the training images are oversampled)")


def repeat_factors(presence: np.ndarray, threshold: float) -> np.ndarray:
  """Per-record repeat factors r_i >= 1 (float64 (N,)) of LVIS's repeat-factor sampling.

  Args:
    presence: bool (N, C), whether record i contains class c.
    threshold: t > 0; classes in fewer than a fraction t of the records are repeated.
  """
  presence = np.asarray(presence, bool)
  frequency = presence.mean(axis=0)  # f_c; 0 for classes no record contains.
  class_factor = np.sqrt(threshold / np.maximum(frequency, 1e-12))
  factors = np.where(presence, class_factor[None, :], 1.0).max(axis=1, initial=1.0)
  return np.maximum(factors, 1.0)


class ExampleOrder:
  """The record key at every global position of the training stream.

  Picklable (grain worker processes each hold a copy); epochs are computed
  when first needed and the last few are kept.
  """

  def __init__(self, num_records: int, seed: int, factors: np.ndarray | None = None):
    if num_records <= 0:
      raise ValueError("the training split has no examples")
    self.num_records = int(num_records)
    self.seed = int(seed)
    self.factors = None if factors is None else np.asarray(factors, np.float64)
    if self.factors is not None and self.factors.shape != (self.num_records,):
      raise ValueError(f"{self.factors.shape[0]} repeat factors for {num_records} records")
    self._starts = [0]  # Position of each computed epoch's first example, and the next.
    self._epochs = {}  # The last epochs' keys.
    self._lock = threading.Lock()

  def __getstate__(self):
    state = dict(self.__dict__)
    del state["_lock"]
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def describe(self) -> dict:
    """What fixes the stream: saved with a data position and checked when it is restored."""
    description = {"sampler": "uniform" if self.factors is None else "repeat_factor",
                   "num_records": self.num_records, "seed": self.seed}
    if self.factors is not None:
      description["factors_sha256"] = hashlib.sha256(self.factors.tobytes()).hexdigest()[:16]
    return description

  def _counts(self, epoch: int) -> np.ndarray | None:
    """How often each record appears in `epoch` (None: once each)."""
    if self.factors is None:
      return None
    whole = np.floor(self.factors)
    extra = _rng(self.seed, _ROUNDING, epoch).random(self.num_records) < self.factors - whole
    return (whole + extra).astype(np.int64)

  def epoch(self, epoch: int) -> np.ndarray:
    """The record keys of `epoch`, in order: int64 (its length,)."""
    keys = self._epochs.get(epoch)
    if keys is None:
      counts = self._counts(epoch)
      keys = (np.arange(self.num_records) if counts is None else
              np.repeat(np.arange(self.num_records), counts))
      keys = _rng(self.seed, _SHUFFLE, epoch).permutation(keys)
      with self._lock:
        if len(self._epochs) >= 2:  # Batches span at most two epochs at a time.
          del self._epochs[min(self._epochs)]
        self._epochs[epoch] = keys
    return keys

  def _epoch_of(self, position: int) -> int:
    with self._lock:
      while self._starts[-1] <= position:
        epoch = len(self._starts) - 1
        counts = self._counts(epoch)
        self._starts.append(self._starts[-1] + (self.num_records if counts is None
                                                else int(counts.sum())))
      return bisect.bisect_right(self._starts, position) - 1

  def key(self, position: int) -> int:
    """The record at global `position` (>= 0)."""
    if position < 0:
      raise IndexError(f"stream position {position} < 0")
    epoch = self._epoch_of(position)
    return int(self.epoch(epoch)[position - self._starts[epoch]])


class ProcessPositions:
  """The global positions one process loads, in order: its rows of each global
  batch from position `start` on (an endless sequence, computed on access)."""

  LENGTH = 2**62  # grain's datasets have a length; no run gets this far.

  def __init__(self, start: int, global_batch_size: int, local_batch_size: int,
               process_index: int):
    self.start, self.global_batch_size = int(start), int(global_batch_size)
    self.local_batch_size = int(local_batch_size)
    self.offset = process_index * self.local_batch_size

  def __len__(self) -> int:
    return self.LENGTH

  def __getitem__(self, index: int) -> int:
    batch, row = divmod(int(index), self.local_batch_size)
    return self.start + batch * self.global_batch_size + self.offset + row
