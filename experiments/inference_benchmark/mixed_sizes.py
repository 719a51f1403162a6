"""segjax's predict path against eager PyTorch on a folder of photos of many sizes.

  python experiments/inference_benchmark/mixed_sizes.py [--count 100] [--cold_runs 3] \\
      [--rounds 3] > experiments/inference_benchmark/mixed_sizes.log

The model is configs/segnet_skin.py's for the SFA photos (SegNet at a quarter
width, each photo fitted into 384x288 keeping its aspect ratio, whole-image
inference), with random weights and 2 classes. `--count` photos are generated
in memory (seed 0): sides drawn uniformly from 200 to 700 px, a gradient,
coloured blobs and noise.

- segjax: `segjax.predict.Predictor.predict_many`, the path of
  `python -m segjax.predict` once the images are decoded (read ahead and
  planned, resized, whole-image batches, logits back to each photo's size,
  arg-max, uint8 masks).
- PyTorch eager: `benchmarks.torch_models.segment_image` per photo (batch 1 at
  its own size, the same resizes and normalisation), the same architecture
  with its own random weights.
Cold: `--cold_runs` times, each runner's first pass over the photos in a
fresh process (segjax's every compilation included; model building, and
generating the photos, not), alternating. Warm: then in this process, after
one untimed pass each, `--rounds` passes of each, alternating. Medians. The
float32 matmul rate (2048x2048) and the load average are logged before and
after. Human-readable lines, then one JSON line.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.append(REPO)  # For `benchmarks`; PYTHONPATH may name another segjax to time.

from segjax import benchmark as train_benchmark  # noqa: E402
from segjax import predict  # noqa: E402
from segjax.data import pipeline  # noqa: E402
from segjax.models import factory  # noqa: E402
from segjax.training import restored  # noqa: E402


def skin_config():
  """configs/segnet_skin.py's SFA variant (the folder is never read)."""
  spec = importlib.util.spec_from_file_location(
      "segnet_skin", os.path.join(REPO, "configs", "segnet_skin.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config("generated-photos")


def photos(count: int, seed: int = 0) -> list[np.ndarray]:
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(count):
    height, width = (int(v) for v in rng.integers(200, 701, 2))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.empty((height, width, 3), np.float32)
    image[:] = rng.uniform(40, 200, 3) + (yy / height)[..., None] * rng.uniform(-60, 60, 3)
    for _ in range(int(rng.integers(1, 5))):
      cy, cx = rng.uniform(0, height), rng.uniform(0, width)
      radius = rng.uniform(0.1, 0.4) * min(height, width)
      blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2))
      image += blob[..., None] * (rng.uniform(120, 240, 3) - image)
    image += rng.normal(0, 12, image.shape)
    out.append(np.clip(image, 0, 255).astype(np.uint8))
  return out


def segjax_runner(config, num_classes: int, log):
  model = factory.create_model(config, num_classes)
  init = jax.jit(lambda key: model.init({"params": key, "dropout": key},
                                        np.zeros((1, 64, 64, 3), np.float32), train=False))
  variables = init(jax.random.key(config.seed))
  segmenter = restored.create_segmenter(config, model, 3)
  segmenter.log = log
  predictor = predict.Predictor.__new__(predict.Predictor)
  predictor._set_up("random weights", 0, variables, num_classes, 3, ["background", "skin"],
                    segmenter, predict._probabilities)

  def run(images):
    return {key: mask for key, mask, _ in predictor.predict_many(enumerate(images))}
  return run, segmenter


def torch_runner(config, num_classes: int, total_stride: int):
  import torch
  from benchmarks import torch_models
  options = {k: v for k, v in config.model.items() if k not in factory.NON_MODEL_KEYS}
  model = torch_models.build(config.model.name, num_classes, 3, **options).eval()
  scale = tuple(config.dataset.scale)

  def run(images):
    masks = {}
    for key, image in enumerate(images):
      height, width = image.shape[:2]
      factor = pipeline.rescale_factor(height, width, scale)
      size = (max(1, round(height * factor)), max(1, round(width * factor)))
      masks[key] = torch_models.segment_image(model, image, size, total_stride)
    return masks
  return run, torch.__version__, torch.get_num_threads()


def timed(run, images):
  start = time.perf_counter()
  masks = run(images)
  seconds = time.perf_counter() - start
  assert len(masks) == len(images) and all(
      masks[i].shape == images[i].shape[:2] for i in range(len(images)))
  return seconds


def runner(name: str, config):
  """(run: images -> {index: mask}, description) of `name`, model built."""
  if name == "segjax":
    run, segmenter = segjax_runner(config, 2, lambda line: None)
    return run, segmenter
  run, version, threads = torch_runner(config, 2, segjax_total_stride(config))
  return run, f"torch {version}, {threads} threads"


def segjax_total_stride(config) -> int:
  from segjax import models
  return models.total_stride(factory.create_model(config, 2), 3)


def cold_worker(name: str, count: int) -> None:
  """One first pass of `name` in this fresh process: one JSON line."""
  images = photos(count)
  run, info = runner(name, skin_config())
  load = os.getloadavg()[0]
  seconds = timed(run, images)
  out = {"runner": name, "seconds": seconds, "load_before": round(load, 2),
         "load_after": round(os.getloadavg()[0], 2)}
  if name == "segjax":  # (segjax before mixed-size batching had no canvases nor _whole.)
    out["compiled_shapes"] = [list(v) for v in info.compiled_shapes]
    out["canvases"] = [list(v) for v in getattr(info, "canvases", [])]
    out["network_compilations"] = getattr(info, "_whole", info._network)._cache_size()
  print(json.dumps(out), flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--count", type=int, default=100)
  parser.add_argument("--cold_runs", type=int, default=3)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--worker", choices=("segjax", "torch_eager"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return cold_worker(args.worker, args.count)
  say = lambda text: print(text, flush=True)
  result = {"count": args.count, "cold_runs": args.cold_runs, "rounds": args.rounds,
            "jax_version": jax.__version__, "backend": jax.default_backend(),
            **train_benchmark._describe_machine(),
            "load_average_start": [round(v, 2) for v in os.getloadavg()]}
  images = photos(args.count)
  sizes = collections.Counter(image.shape[:2] for image in images)
  result["distinct_sizes"] = len(sizes)
  peak = train_benchmark.matmul_peak_gflops(2048, 5)
  config = skin_config()
  say(f"{args.count} photos, {len(sizes)} sizes, sides 200-700 px; {config.model.name} "
      f"width x{config.model.width_multiplier}, fitted into {tuple(config.dataset.scale)}; "
      f"float32 matmul 2048x2048 {peak:.1f} GFLOP/s; load average {result['load_average_start']}")
  cold = {"segjax": [], "torch_eager": []}
  for index in range(args.cold_runs):
    for name in cold:
      line = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", name,
                             "--count", str(args.count)], capture_output=True, text=True,
                            check=True).stdout.strip().splitlines()[-1]
      cold[name].append(json.loads(line))
      say(f"cold run {index + 1}/{args.cold_runs}: {line}")
  segjax_run, segmenter = runner("segjax", config)
  torch_run, result["torch"] = runner("torch_eager", config)
  options = segmenter.options
  say(f"segjax: {options.mode}, batch {options.batch_size}, total stride {options.total_stride}, "
      f"max_shapes {options.max_shapes}, compile cost {segmenter.compile_cost} px; "
      f"{result['torch']}")
  warm = {"segjax": [], "torch_eager": []}
  runs = {"segjax": segjax_run, "torch_eager": torch_run}
  for name, run in runs.items():
    timed(run, images)  # Compiled, warmed up.
  for index in range(args.rounds):
    for name, run in runs.items():
      warm[name].append(timed(run, images))
    say(f"warm round {index + 1}/{args.rounds}: " + ", ".join(
        f"{name} {t[-1]:.2f} s" for name, t in warm.items()) +
        f"; load average {[round(v, 2) for v in os.getloadavg()]}")
  median = lambda values: statistics.median(values) if values else None
  result["cold_s"] = {name: median([r["seconds"] for r in runs_]) for name, runs_ in cold.items()}
  result["cold_runs_detail"] = cold
  result["warm_s"] = {name: median(t) for name, t in warm.items()}
  result["segjax_compiled_shapes"] = [list(v) for v in segmenter.compiled_shapes]
  result["segjax_canvases"] = [list(v) for v in segmenter.canvases]
  result["matmul_peak_gflops"] = max(peak, train_benchmark.matmul_peak_gflops(2048, 5))
  result["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
  # Above 1: segjax takes longer than PyTorch eager.
  ratio = lambda times: (times["segjax"] / times["torch_eager"]
                         if times["segjax"] and times["torch_eager"] else None)
  result["segjax_time_over_torch"] = {"cold": ratio(result["cold_s"]),
                                      "warm": ratio(result["warm_s"])}
  say(f"medians: cold segjax {result['cold_s']['segjax']:.2f} s, torch eager "
      f"{result['cold_s']['torch_eager']:.2f} s ({result['segjax_time_over_torch']['cold']:.2f}x "
      f"torch's time); warm " + (f"{result['warm_s']['segjax']:.2f} s vs "
                                  f"{result['warm_s']['torch_eager']:.2f} s "
                                  f"({result['segjax_time_over_torch']['warm']:.2f}x)"
                                  if args.rounds else "-") +
      f"; segjax shapes {result['segjax_compiled_shapes']}, canvases "
      f"{result['segjax_canvases']}; load average at the end {result['load_average_end']}")
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
