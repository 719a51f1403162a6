"""Keeping a run safe: one process per workdir, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time

import jax

from segjax.training import checkpointing


class WorkdirInUseError(RuntimeError):
  pass


class WorkdirLock:
  """An exclusive lock on the workdir for this JAX process, held while training.

  The kernel drops the lock when the process dies, even by SIGKILL, so a
  killed run never leaves a stale lock behind. The lock is released only once
  the checkpoints being written are complete, also when the run fails: the
  last checkpoint saved before an error is kept.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, f".lock.process_{jax.process_index()}")
    self._file = None

  def __enter__(self):
    self._file = open(self.path, "a+")
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._file.seek(0)
      owner = self._file.read().strip() or "unknown"
      self._file.close()
      raise WorkdirInUseError(
          f"{os.path.dirname(self.path)} is in use by another training run (pid {owner}); "
          "wait for it to finish or choose another --workdir") from None
    self._file.seek(0)
    self._file.truncate()
    self._file.write(str(os.getpid()))
    self._file.flush()
    return self

  def __exit__(self, *exc):
    try:
      checkpointing.wait_for_saves()
    finally:
      fcntl.flock(self._file, fcntl.LOCK_UN)
    self._file.close()


class StopSignal:
  """Records SIGTERM/SIGINT instead of dying, so the loop can save and exit 0.

  A second signal, a second or more after the first, acts as it would without
  this handler (SIGINT raises KeyboardInterrupt, SIGTERM ends the process): a
  run that cannot reach its next step can still be stopped. One within the
  second is the same stop delivered twice (a launcher passing it on) and is
  ignored.
  """

  REPEAT_AFTER_S = 1.0

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.received: str | None = None
    self._received_at = 0.0
    self._previous = {}

  def _handle(self, signum, frame):
    now = time.monotonic()
    if self.received is None:
      self.received, self._received_at = signal.Signals(signum).name, now
      return
    if now - self._received_at < self.REPEAT_AFTER_S:
      return
    previous = self._previous.get(signum, signal.SIG_DFL)
    signal.signal(signum, previous)
    if callable(previous):
      previous(signum, frame)
    elif previous == signal.SIG_DFL:
      os.kill(os.getpid(), signum)

  def __enter__(self):
    if threading.current_thread() is not threading.main_thread():
      return self  # Only the main thread may set handlers; signals then act as before.
    for signum in self.SIGNALS:
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
