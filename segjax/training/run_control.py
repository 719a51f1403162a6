"""Keeping a run safe: one process per workdir, and a clean stop on SIGTERM/SIGINT that
every process of a multi-process run makes at the same step."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from segjax.training import checkpointing

# Tests only: "STEP:DIR" makes the loop wait at STEP (`pause_for_tests`), so that a
# test sends a signal or a kill at a step of its choosing instead of racing the run.
PAUSE_VARIABLE = "SEGJAX_TEST_PAUSE"


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

  @staticmethod
  def clock() -> float:
    return time.monotonic()

  def _handle(self, signum, frame):
    now = self.clock()
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
      # None: a handler set outside Python (JAX's preemption notifier); restored as the default.
      self._previous[signum] = signal.signal(signum, self._handle) or signal.SIG_DFL
    return self

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def agreed(self, step: int, sync: bool) -> str | None:
    """The stop to act on after `step`: the signal's name, or None to go on.

    One process acts on its own signal at once. Several processes must save the
    same step together (a save is a collective; a process that saved alone would
    wait for the others, which wait in the next step's collectives), so they
    exchange their signals only where `sync` is true, at steps where every process
    syncs anyway (a log or checkpoint step: no host round-trip is added to other
    steps), and all stop there if any process received one.
    """
    pause_for_tests(step, self)
    if jax.process_count() == 1:
      return self.received
    if not sync:
      return None
    local = signal.Signals[self.received].value if self.received else 0
    received = np.asarray(multihost_utils.process_allgather(np.int32(local))).reshape(-1)
    senders = np.flatnonzero(received)
    if not senders.size:
      return None
    name = signal.Signals(int(received[senders[0]])).name
    return f"{name} (process {', '.join(str(i) for i in senders)})"


def pause_for_tests(step: int, stop: StopSignal) -> None:
  """With $SEGJAX_TEST_PAUSE=STEP:DIR, at STEP: writes DIR/paused, then waits until this
  process received a stop signal or DIR/resume exists. Tests send their signal (or
  kill) then, at a known step; nothing else reads the variable."""
  value = os.environ.get(PAUSE_VARIABLE)
  if not value:
    return
  at, _, directory = value.partition(":")
  if step != int(at):
    return
  with open(os.path.join(directory, "paused"), "w") as f:
    f.write(f"{os.getpid()} {step}\n")
  while stop.received is None and not os.path.exists(os.path.join(directory, "resume")):
    time.sleep(0.01)
