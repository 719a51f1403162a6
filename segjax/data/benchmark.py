"""Measures the training input pipeline alone: read + decode + augment + batch.

  python -m segjax.data.benchmark --config configs/segnet_skin.py \\
      [--config.KEY=VALUE ...] [--num_batches 50] [--workers 0,1,2]

For each grain worker count it builds `pipeline.train_loader` as training
does, discards `--warmup_batches` (worker start-up), then times
`--num_batches` batches. Reported per worker count: images/s (wall clock),
images/s per worker, and images per CPU-second over the main process and its
worker processes, the per-core rate, which holds up better than wall clock
on a busy machine (CPU time from /proc, so Linux only).
"""

from __future__ import annotations

import glob
import json
import os
import platform
import time

from absl import app, flags, logging
from ml_collections import config_flags

from segjax import data as datasets
from segjax.data import pipeline

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
flags.DEFINE_integer("num_batches", 50, "Batches timed per worker count.")
flags.DEFINE_integer("warmup_batches", 5, "Batches read before timing starts.")
flags.DEFINE_list("workers", ["0", "1", "2"], "grain worker counts to measure.")
flags.mark_flags_as_required(["config"])


def _cpu_seconds(pid: int) -> float:
  """User + system CPU time of a process, all its threads; 0 if it is gone."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
  except OSError:
    return 0.0
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process_tree_cpu() -> dict[int, float]:
  """{pid: CPU seconds} of this process and its descendants."""
  pids, frontier = [os.getpid()], [os.getpid()]
  while frontier:
    children = []
    for pid in frontier:
      for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
          with open(path) as f:
            children += [int(child) for child in f.read().split()]
        except OSError:
          pass
    pids += children
    frontier = children
  return {pid: _cpu_seconds(pid) for pid in pids}


def measure(source, config, workers: int, num_batches: int, warmup_batches: int) -> dict:
  config.dataset.num_workers = workers
  iterator = iter(pipeline.train_loader(source, config))
  for _ in range(warmup_batches):
    next(iterator)
  cpu_before = _process_tree_cpu()
  start = time.perf_counter()
  for _ in range(num_batches):
    next(iterator)
  wall = time.perf_counter() - start
  cpu_after = _process_tree_cpu()
  cpu = sum(seconds - cpu_before.get(pid, 0.0) for pid, seconds in cpu_after.items())
  del iterator
  images = num_batches * pipeline.local_batch_size(config.batch_size)
  return {"workers": workers, "images": images, "wall_s": round(wall, 3),
          "images_per_s": round(images / wall, 1),
          "images_per_s_per_worker": round(images / wall / max(workers, 1), 1),
          "cpu_s": round(cpu, 3), "images_per_cpu_s": round(images / max(cpu, 1e-9), 1)}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  config = FLAGS.config
  data = datasets.load(config.dataset)  # Prepared before timing.
  height, width = pipeline.image_size(config.dataset)
  print(json.dumps({
      "dataset": config.dataset.name, "train_examples": len(data.train),
      "image_size": [height, width], "augmentations": list(config.dataset.augmentations),
      "batch_size": config.batch_size, "cpu_count": os.cpu_count(),
      "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
      "load_average": [round(v, 2) for v in os.getloadavg()]}), flush=True)
  for workers in (int(w) for w in FLAGS.workers):
    result = measure(data.train, config, workers, FLAGS.num_batches, FLAGS.warmup_batches)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
  app.run(main)
