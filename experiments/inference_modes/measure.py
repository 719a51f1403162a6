"""Images/s of whole and slide inference on a run's evaluation photos (CPU).

  python experiments/inference_modes/measure.py --workdir RUN [--modes whole,slide]
      [--data_dir DIR] [--limit N]

For each mode, segments every evaluation image once to compile (not timed),
then again, timed, including the copy of the predictions to the host.
"""

import argparse
import os
import platform
import time

import jax
import numpy as np

from segjax import data as datasets
from segjax.inference import evaluation
from segjax.training import restored


def matmul_gflops() -> float:
  """float32 2048x2048 jitted matmul, GFLOP/s (the hardware line of experiments/)."""
  x = jax.numpy.ones((2048, 2048), jax.numpy.float32)
  f = jax.jit(lambda a: a @ a)
  f(x).block_until_ready()
  start = time.perf_counter()
  for _ in range(5):
    f(x).block_until_ready()
  return 5 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--modes", default="whole,slide")
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--limit", type=int, default=0)
  args = parser.parse_args()
  run = restored.restore(args.workdir)
  config = run.config
  if args.data_dir:
    config.dataset.data_dir = args.data_dir
  source = datasets.load(config.dataset).eval
  count = args.limit or len(source)
  images = {i: r["image"] for i, r in evaluation.read_records(source, range(count))}
  sizes = sorted({im.shape[:2] for im in images.values()})
  print(f"{count} images of sizes {sizes}; {os.cpu_count()} CPUs, {platform.machine()}, "
        f"load average {os.getloadavg()}; matmul {matmul_gflops():.1f} GFLOP/s")
  for mode in args.modes.split(","):
    segmenter = restored.create_segmenter(config, run.model, run.num_channels, mode=mode)
    evaluation.predict_masks(segmenter, run.variables, images)  # Compiles.
    start = time.perf_counter()
    masks = evaluation.predict_masks(segmenter, run.variables, images)
    seconds = time.perf_counter() - start
    assert len(masks) == count
    print(f"{mode}: {count / seconds:.2f} images/s ({seconds:.1f} s for {count}; "
          f"{segmenter.options.window} windows every {segmenter.options.step} px in slide mode)")


if __name__ == "__main__":
  main()
