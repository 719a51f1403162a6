"""Inference speed of a config's model: segjax's jit, its StableHLO and ONNX exports, PyTorch.

  python -m segjax.export.benchmark --config configs/segnet_skin.py \\
      [--config.dataset.image_size=256] [--batch_sizes 1,16] [--rounds 10] [--compare torch]

Every runner takes the same uint8 NHWC batch and returns the class map
(normalisation, model, arg-max): segjax's jitted `segjax.export.function`
prediction, the StableHLO export deserialised and jitted (`segjax.export.load`
runs it so), the ONNX export in onnxruntime (CPU, all graph optimisations),
and with `--compare torch` (as in segjax.benchmark; `--torch` is its older
name) the same architecture in PyTorch eager
(`benchmarks/torch_models.py`, eval mode, `torch.inference_mode`). Weights are
random (speed does not depend on them). After a warm-up call each, the
runners alternate call by call, `--rounds` times per batch size, so that they
share the machine's load; medians, and ratios of medians, are reported. The
float32 matmul rate (2048x2048) is measured before and after.

Human-readable lines first; the last stdout line is one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from segjax import benchmark as train_benchmark
from segjax.data import pipeline
from segjax.export import function, onnx_graph, stablehlo
from segjax.inference import segmenter
from segjax.models import factory
from segjax.runtime import cpu_kernels

FLAGS = flags.FLAGS


def _segjax_runners(config, num_classes: int, channels: int, size: tuple[int, int], log):
  """{name: images -> classes} for segjax's jit, the StableHLO export and ONNX Runtime."""
  import onnxruntime
  model = factory.create_model(config, num_classes)
  init = jax.jit(lambda key: model.init({"params": key, "dropout": key},
                                        np.zeros((1, *size, channels), np.float32), train=False))
  variables = init(jax.random.key(config.seed))
  options = segmenter.Options.from_config(config, total_stride=1)
  predict = function.inference_function(model.apply, variables, options.normalization,
                                        "classes", options.flip)
  start = time.perf_counter()
  exported, rule = stablehlo.export(predict, size, channels)
  restored = jax.export.deserialize(exported.serialize())
  log(f"StableHLO exported in {time.perf_counter() - start:.1f} s, input rule {rule}")
  start = time.perf_counter()
  onnx_model = onnx_graph.convert(predict, (*size, channels))
  session = onnxruntime.InferenceSession(onnx_model.SerializeToString(),
                                         providers=["CPUExecutionProvider"])
  log(f"ONNX converted and loaded in {time.perf_counter() - start:.1f} s "
      f"(onnxruntime {onnxruntime.__version__})")
  options = cpu_kernels.inference_compiler_options()
  log(f"forward-pass compiler options: {options}")
  jitted = jax.jit(predict, compiler_options=options)
  from_stablehlo = jax.jit(restored.call, compiler_options=options)
  return {
      "segjax_jit": lambda images: np.asarray(jitted(images)),
      "stablehlo": lambda images: np.asarray(from_stablehlo(images)),
      "onnxruntime": lambda images: session.run(None, {"images": images})[0],
  }


def _torch_runner(config, num_classes: int, channels: int, normalization: str):
  import torch
  try:
    from benchmarks import torch_models
  except ImportError:  # Run from elsewhere than the repository root.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    from benchmarks import torch_models
  if normalization != "unit":
    raise ValueError(f"the PyTorch runner normalises as 'unit' only (the run's: {normalization})")
  options = {k: v for k, v in config.model.items() if k not in factory.NON_MODEL_KEYS}
  model = torch_models.build(config.model.name, num_classes, channels, **options).eval()

  def run(images):
    with torch.inference_mode():
      x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
      return model(x).argmax(1).to(torch.int32).numpy()
  return run, torch.__version__, torch.get_num_threads()


def run(config, batch_sizes=(1, 16), rounds: int = 10, compare_torch: bool = False,
        log=print) -> dict:
  num_classes = int(config.dataset.num_classes)
  size = pipeline.image_size(config.dataset)
  channels = 1 if config.dataset.grayscale else 3
  result = {"model": config.model.name, "model_options": config.model.to_dict(),
            "image_size": list(size), "channels": channels, "num_classes": num_classes,
            "rounds": rounds, "jax_version": jax.__version__,
            **train_benchmark._describe_machine(),
            "load_average_start": [round(v, 2) for v in os.getloadavg()]}
  peak = train_benchmark.matmul_peak_gflops(2048, 5)
  log(f"{config.model.name} {size[0]}x{size[1]}x{channels}, {num_classes} classes; "
      f"float32 matmul 2048x2048 {peak:.1f} GFLOP/s; load average {result['load_average_start']}")
  runners = _segjax_runners(config, num_classes, channels, size, log)
  if compare_torch:
    runners["torch_eager"], result["torch_version"], result["torch_threads"] = _torch_runner(
        config, num_classes, channels, segmenter.Options.from_config(config, 1).normalization)
  rng = np.random.default_rng(0)
  for batch in batch_sizes:
    images = rng.integers(0, 256, (batch, *size, channels), dtype=np.uint8)
    outputs = {name: runner(images) for name, runner in runners.items()}  # Warm-up.
    agreement = {name: float(np.mean(out == outputs["segjax_jit"]))
                 for name, out in outputs.items()}
    times = {name: [] for name in runners}
    for index in range(rounds):
      for name, runner in runners.items():
        start = time.perf_counter()
        runner(images)
        times[name].append(time.perf_counter() - start)
      log(f"batch {batch} round {index + 1}/{rounds}: " + ", ".join(
          f"{name} {1000 * t[-1]:.1f} ms" for name, t in times.items()))
    medians = {name: statistics.median(t) for name, t in times.items()}
    entry = {"median_ms": {n: 1000 * m for n, m in medians.items()},
             "min_ms": {n: 1000 * min(t) for n, t in times.items()},
             "images_per_sec": {n: batch / m for n, m in medians.items()},
             "class_agreement_with_segjax_jit": agreement,
             # > 1: segjax's jit is faster.
             "segjax_speedup_over": {n: m / medians["segjax_jit"] for n, m in medians.items()
                                     if n != "segjax_jit"}}
    result[f"batch_{batch}"] = entry
    log(f"batch {batch}: median ms " + ", ".join(
        f"{n} {v:.1f}" for n, v in entry["median_ms"].items()) + "; segjax jit speed-up over "
        + ", ".join(f"{n} {v:.2f}x" for n, v in entry["segjax_speedup_over"].items()))
  result["matmul_peak_gflops"] = max(peak, train_benchmark.matmul_peak_gflops(2048, 5))
  result["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
  log(f"load average at the end: {result['load_average_end']}")
  return result


def main(argv):
  from segjax import cli
  from segjax.training import config_check
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  try:
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
  except ValueError:
    batch_sizes = []
  if not batch_sizes or min(batch_sizes) < 1 or FLAGS.rounds < 1:
    raise cli.CommandError(f"--batch_sizes {','.join(FLAGS.batch_sizes)} --rounds {FLAGS.rounds}: "
                           "give positive whole numbers, e.g. --batch_sizes 1,16 --rounds 10")
  config = FLAGS.config
  if not config.dataset.num_classes or config.dataset.num_classes < 1:
    raise cli.CommandError(f"config.dataset.num_classes={config.dataset.num_classes!r}: the "
                           "model needs a class count")
  config_check.check(config, devices=False)  # Inference on one device.
  compare_torch = FLAGS.compare == "torch" or FLAGS.torch
  if compare_torch:
    normalization = segmenter.Options.from_config(config, 1).normalization
    if normalization != "unit":
      raise cli.CommandError(f"--compare torch: the PyTorch runner normalises as 'unit' only, "
                             f"the config's is {normalization!r} (config.dataset.normalization)")
    train_benchmark.check_torch_available()
  result = run(config, batch_sizes, FLAGS.rounds, compare_torch,
               log=lambda s: print(s, flush=True))
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  from segjax import cli
  config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
  flags.DEFINE_list("batch_sizes", ["1", "16"], "Batch sizes to time.")
  flags.DEFINE_integer("rounds", 10, "Timed calls per runner and batch size, alternating.")
  flags.DEFINE_enum("compare", "", ["", "torch"], "Also time the same model in this framework "
                    "(as segjax.benchmark --compare).")
  flags.DEFINE_bool("torch", False, "Older name of --compare torch.")
  flags.mark_flags_as_required(["config"])
  cli.run(main)
