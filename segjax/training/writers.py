"""Where a run's measurements go: metrics.jsonl, TensorBoard and the console.

Only JAX process 0 writes.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax


def _json_value(value):
  if isinstance(value, float) and not math.isfinite(value):
    return None  # JSON has no NaN; a class absent from a split has no IoU.
  if isinstance(value, list):
    return [_json_value(v) for v in value]
  return value


def json_line(record: dict) -> str:
  """One line of strict JSON: non-finite metrics (an absent class's IoU) become null."""
  return json.dumps({key: _json_value(value) for key, value in record.items()})


def drop_lines_after(path: str, step: int) -> int:
  """Removes the lines of steps after `step` (and a line cut short) from a metrics.jsonl.

  The kept lines go to a new file that replaces the old one in one rename, so
  a process killed meanwhile leaves one or the other, never half of each.
  Returns the number of lines dropped.
  """
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    lines = f.read().split("\n")
  kept = []
  for line in lines:
    try:
      if json.loads(line)["step"] <= step:
        kept.append(line)
    except (ValueError, KeyError, TypeError):  # An empty or partly written last line.
      pass
  dropped = len([line for line in lines if line]) - len(kept)
  if dropped:
    temporary = f"{path}.tmp"
    with open(temporary, "w") as f:
      f.write("".join(line + "\n" for line in kept))
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)
  return dropped


class MetricWriter:
  """Appends one JSON object per event to metrics.jsonl and mirrors scalars to TensorBoard.

  A run that starts at `resume_step` (its restored checkpoint's, or 0) first
  drops what an earlier process logged after that step (the steps it redoes),
  from metrics.jsonl and from TensorBoard's view (its purge_step), so both
  read as one run.
  """

  def __init__(self, workdir: str, resume_step: int = 0):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    from tensorboardX import SummaryWriter  # Only process 0 needs it.
    path = os.path.join(workdir, "metrics.jsonl")
    dropped = drop_lines_after(path, resume_step)
    if dropped:
      log(f"{dropped} line(s) of steps after {resume_step} dropped from {path}: "
          "those steps run again")
    self.jsonl = open(path, "a")
    self.tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"),
                                     purge_step=resume_step + 1)

  def write(self, step: int, split: str, metrics: dict) -> None:
    if not self.enabled:
      return
    self.jsonl.write(json_line({"step": int(step), "split": split, **metrics}) + "\n")
    self.jsonl.flush()
    for key, value in metrics.items():
      if isinstance(value, (int, float)) and math.isfinite(value):
        self.tensorboard.add_scalar(f"{split}/{key}", value, step)
      elif isinstance(value, list):
        for i, v in enumerate(value):
          if isinstance(v, float) and math.isfinite(v):
            self.tensorboard.add_scalar(f"{split}/{key}/{i}", v, step)
    self.tensorboard.flush()

  def close(self) -> None:
    if self.enabled:
      self.jsonl.close()
      self.tensorboard.close()


def log(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


class Progress:
  """A console line per log interval: step, loss, images/s and time to go."""

  def __init__(self, first_step: int, last_step: int):
    self.first_step, self.last_step = first_step, last_step
    self.start = time.time()

  def report(self, step: int, loss: float, images_per_sec: float) -> None:
    done = step - self.first_step
    remaining = (time.time() - self.start) / max(done, 1) * (self.last_step - step)
    log(f"step {step}/{self.last_step}  loss {loss:.4f}  {images_per_sec:.1f} img/s  "
        f"ETA {int(remaining) // 60}m{int(remaining) % 60:02d}s")
    sys.stdout.flush()
