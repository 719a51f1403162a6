"""Keeps the next batches on the device while the current step runs.

A background thread reads the data iterator (`pipeline.TrainStream`) and
places each batch on the mesh. Its checkpointable state is the iterator's
state *after the last batch handed to the trainer*, not after the batches
still waiting, so a resumed run sees exactly the batches an uninterrupted one
would.
"""

from __future__ import annotations

import queue
import threading

from jax.sharding import NamedSharding

from segjax.runtime import sharding as sharding_lib


class DevicePrefetcher:

  def __init__(self, iterator, sharding: NamedSharding, size: int = 2):
    self._iterator = iterator
    self._sharding = sharding
    self._size = max(size, 1)
    self._state = iterator.get_state()
    self._thread = None
    self._queue = None
    self._stop = threading.Event()

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    if self._thread is None:
      self._start()
    item = self._queue.get()
    if isinstance(item, BaseException):
      self._queue.put(item)  # The reader has stopped: every later call raises it too.
      raise item
    batch, self._state = item
    return batch

  def _start(self):
    self._stop.clear()
    self._queue = queue.Queue(maxsize=self._size)
    self._thread = threading.Thread(target=self._fill, daemon=True)
    self._thread.start()

  def _fill(self):
    try:
      while not self._stop.is_set():
        batch = next(self._iterator)
        self._put((sharding_lib.put_batch(batch, self._sharding), self._iterator.get_state()))
    except BaseException as error:  # Handed to the consumer, raised there.
      self._put(error)

  def _put(self, item) -> None:
    """Waits for room in the queue, unless `close` is waiting for this thread."""
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return
      except queue.Full:
        continue

  def close(self):
    if self._thread is not None:
      self._stop.set()
      self._thread.join()
      self._thread = None

  # The data iterator's checkpoint interface (segjax.training.checkpointing).
  def get_state(self) -> bytes:
    return self._state

  def set_state(self, state: bytes) -> None:
    self.close()
    self._iterator.set_state(state)
    self._state = state

  def start_prefetch(self) -> None:
    pass  # Starts on the first batch requested.
