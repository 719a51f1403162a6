"""Measures the train step of a config: compile time, step time, FLOP/s, memory.

  python -m segjax.benchmark --config configs/segnet_skin.py [--config.KEY=VALUE ...] \\
      [--steps 20] [--warmup 3] [--compare torch]

The model, train state and jitted step are built as training builds them
(`factory.create_model`, `trainer_lib.Trainer`: the mesh, the batch sharding, the
donated state); the batch is a fixed synthetic uint8 batch of the config's
`batch_size` and `dataset.image_size`, so no dataset is prepared. Reported:

  compile_s          lowering + XLA compilation of the train step.
  step_time_s        median over `--steps` timed steps after `--warmup` steps,
                     each step waited for with `block_until_ready`.
  cpu_s_per_step     median process CPU time of a step (all threads): on a
                     machine shared with other jobs it varies less than wall time.
  images_per_sec     batch_size / step_time_s.
  flops_per_step     XLA's cost analysis of the compiled step (what XLA runs:
                     it counts any FLOPs a formulation wastes).
  gflops_per_sec     flops_per_step / step_time_s.
  matmul_peak_gflops this machine's float32 matmul rate, best of several
                     `--matmul_size` square matmuls, before and after the steps.
  mfu                model FLOP utilisation: gflops_per_sec over the devices'
                     peak (`segjax.runtime.device_peaks`: the datasheet peak of the
                     precision the step's matrix products run at,
                     `peak_precision`, times the device count); on a device
                     not in that table (a CPU) the measured matmul peak
                     (`mfu_basis` says which).
  peak_memory_bytes  device `memory_stats()["peak_bytes_in_use"]` where the
                     backend has it, else the process's peak resident set,
                     read after the warm-up steps (before PyTorch is imported);
                     a peak of the whole process so far.
  step_memory_bytes  XLA's memory analysis of the compiled step: arguments,
                     outputs and temporaries (donated buffers once).
  host_memory        "retain" where freed host memory stays in the process
                     (segjax.runtime.host_memory, as in training), else "release".
  cpu_conv_kernels   the convolution kernels the step was compiled with
                     (`config.cpu_conv_kernels`, segjax.runtime.cpu_kernels; "autotune"
                     has picked one while the Trainer was built).

`--compare torch` also builds the same architecture in PyTorch
(`benchmarks/torch_models.py`, from the repository root; `pip install
segjax[torch]`) and times its eager train step (Adam, cross-entropy, BatchNorm
in train mode; on a GPU with automatic mixed precision for a bfloat16 config,
and channels-last tensors) on the same batch, alternating one segjax step and
one PyTorch step so that both see the same machine load; `ratio` is
segjax images/s over PyTorch images/s (`cpu_ratio`: the same in CPU time;
`ratio_min`: of the fastest step of each). `torch_flops_per_step` is
PyTorch's count of the model's FLOPs (its FLOP counter, forward + backward),
the useful work of the architecture. PyTorch runs in the same process, so it
allocates under the same malloc settings (segjax.runtime.host_memory);
SEGJAX_HOST_MEMORY=release times both with glibc's defaults.

Human-readable lines go first; the last stdout line is one JSON object.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from segjax.runtime import device_peaks, host_memory

FLAGS = flags.FLAGS


def _timings(prefix: str, times: list, cpu_times: list, flops_per_step: float,
             batch_size: int) -> dict:
  """Median, fastest and slowest step, CPU time, images/s and GFLOP/s of one side."""
  step_time = statistics.median(times)
  return {f"{prefix}step_time_s": step_time, f"{prefix}step_time_min_s": min(times),
          f"{prefix}step_time_max_s": max(times),
          f"{prefix}cpu_s_per_step": statistics.median(cpu_times),
          f"{prefix}images_per_sec": batch_size / step_time,
          f"{prefix}gflops_per_sec": flops_per_step / step_time / 1e9}


def matmul_peak_gflops(size: int, repeats: int) -> float:
  """Best float32 GFLOP/s of a `size` x `size` matmul on the default device."""
  import jax
  import jax.numpy as jnp
  keys = jax.random.split(jax.random.key(0))
  a = jax.random.normal(keys[0], (size, size), jnp.float32)
  b = jax.random.normal(keys[1], (size, size), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  matmul(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2.0 * size ** 3 / best / 1e9


def peak_rss_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux.


def device_peak_bytes() -> int | None:
  import jax
  peaks = []
  for device in jax.local_devices():
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if not stats or "peak_bytes_in_use" not in stats:
      return None
    peaks.append(int(stats["peak_bytes_in_use"]))
  return max(peaks) if peaks else None


def cost_flops(compiled) -> float:
  """FLOPs of a compiled computation from XLA's cost analysis (0 if unknown)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # Older JAX: one dict per computation.
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get("flops", 0.0))


def step_memory_bytes(compiled) -> int | None:
  """Device memory of one execution by XLA's memory analysis of the compiled step:
  arguments, outputs and temporaries, donated buffers counted once (None if unknown)."""
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
             + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)


def _describe_machine() -> dict:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  return {"cpu": cpu, "cpu_count": os.cpu_count()}


def run(config, steps: int = 20, warmup: int = 3, compare: str = "",
        num_classes: int | None = None, matmul_size: int = 4096, matmul_repeats: int = 5,
        log=print, torch_channels_last: bool | None = None) -> dict:
  """Builds and times the train step of `config`; returns the measurements."""
  import jax

  from segjax.runtime import sharding as sharding_lib
  from segjax.models import factory
  from segjax.training import trainer as trainer_lib
  from segjax.data import pipeline

  if steps < 1 or warmup < 0:
    raise ValueError(f"need steps >= 1 and warmup >= 0 (got steps={steps}, warmup={warmup})")
  num_classes = int(num_classes or config.dataset.num_classes)
  height, width = pipeline.image_size(config.dataset)
  channels = 1 if config.dataset.grayscale else 3
  local_batch = pipeline.local_batch_size(config.batch_size)
  result = {"model": config.model.name, "batch_size": config.batch_size,
            "image_size": [height, width], "channels": channels, "num_classes": num_classes,
            "dtype": config.dtype, "steps": steps, "warmup": warmup,
            "backend": jax.default_backend(), "devices": jax.device_count(),
            "jax_version": jax.__version__, **_describe_machine(),
            "load_average_start": [round(v, 2) for v in os.getloadavg()]}
  log(f"{config.model.name}: batch {config.batch_size}, {height}x{width}x{channels}, "
      f"{num_classes} classes, {config.dtype}, {jax.device_count()} {jax.default_backend()} "
      f"device(s); load average {result['load_average_start']}")

  matmul_peak = matmul_peak_gflops(matmul_size, matmul_repeats)
  log(f"float32 matmul {matmul_size}x{matmul_size}: {matmul_peak:.1f} GFLOP/s (best of "
      f"{matmul_repeats})")

  model = factory.create_model(config, num_classes)
  trainer = trainer_lib.Trainer(config, model, num_classes, (height, width, channels),
                          config.dataset.ignore_index)
  state = trainer.state
  result["parameters"] = int(sum(x.size for x in jax.tree.leaves(state.params)))
  result["cpu_conv_kernels"] = trainer.cpu_conv_kernels
  host_batch = pipeline.synthetic_batch(local_batch, height, width, channels, num_classes,
                                        config.seed)
  batch = sharding_lib.put_batch(host_batch, trainer.batch_sharding)

  jax.clear_caches()  # "autotune" compiled the step already: time a compilation anew.
  start = time.perf_counter()
  lowered = trainer.train_step.lower(state, batch)
  compiled = lowered.compile()
  result["compile_s"] = time.perf_counter() - start
  result["flops_per_step"] = cost_flops(compiled)
  result["step_memory_bytes"] = step_memory_bytes(compiled)
  log(f"{result['parameters']:,} parameters; compiled in {result['compile_s']:.1f} s; "
      f"{result['flops_per_step'] / 1e9:.1f} GFLOP per step (XLA cost analysis)")

  def jax_step():
    nonlocal state
    begin, cpu = time.perf_counter(), time.process_time()
    state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    return time.perf_counter() - begin, time.process_time() - cpu, metrics

  def read_peak_memory(source_note=""):
    device_peak = device_peak_bytes()
    if device_peak is not None:
      result["peak_memory_bytes"] = device_peak
      result["peak_memory_source"] = "device memory_stats"
    else:
      result["peak_memory_bytes"] = peak_rss_bytes()
      result["peak_memory_source"] = "process peak RSS" + source_note

  for _ in range(warmup):
    jax_step()
  if warmup:  # Else after the timed steps: the peak needs a step run.
    read_peak_memory()

  torch_step = None
  if compare == "torch":
    if jax.default_backend() not in ("cpu", "gpu"):
      raise ValueError(f"--compare torch runs on CPU or GPU only, not {jax.default_backend()}")
    torch_trainer = _torch_trainer(config, num_classes, channels, host_batch,
                                   "cuda" if jax.default_backend() == "gpu" else "cpu",
                                   torch_channels_last)
    result.update(torch_trainer.describe())
    torch_step = torch_trainer.step
    for _ in range(warmup):
      torch_step()
    log(f"torch {result['torch_version']}: {result['torch_parameters']:,} parameters, "
        f"{result['torch_flops_per_step'] / 1e9:.1f} GFLOP per step (torch FLOP counter), "
        f"{result['torch_threads']} threads")

  jax_times, jax_cpu, torch_times, torch_cpu = [], [], [], []
  for index in range(steps):  # One step of each, alternating.
    seconds, cpu, metrics = jax_step()
    jax_times.append(seconds)
    jax_cpu.append(cpu)
    line = (f"step {index + 1}/{steps}: segjax {seconds:.3f} s, {cpu:.2f} CPU-s "
            f"(loss {float(metrics['loss']):.4f})")
    if torch_step is not None:
      cpu = time.process_time()
      seconds, loss = torch_step()
      torch_cpu.append(time.process_time() - cpu)
      torch_times.append(seconds)
      line += f"; torch {seconds:.3f} s, {torch_cpu[-1]:.2f} CPU-s (loss {loss:.4f})"
    log(line)

  if not warmup:
    read_peak_memory(" (segjax and torch)" if torch_times else "")
  matmul_peak = max(matmul_peak, matmul_peak_gflops(matmul_size, matmul_repeats))
  result.update(_timings("", jax_times, jax_cpu, result["flops_per_step"], config.batch_size))
  step_time = result["step_time_s"]
  result["matmul_peak_gflops"] = matmul_peak
  result["fraction_of_matmul_peak"] = result["gflops_per_sec"] / matmul_peak
  result.update(_utilisation(config.dtype, result["flops_per_step"], step_time, matmul_peak))
  if torch_times:
    result.update(_timings("torch_", torch_times, torch_cpu, result["torch_flops_per_step"],
                           config.batch_size))
    result.update({
        "ratio": result["torch_step_time_s"] / step_time,
        # The same ratio in process CPU time, and of the fastest steps (those the
        # machine's other jobs disturbed least).
        "cpu_ratio": result["torch_cpu_s_per_step"] / result["cpu_s_per_step"],
        "ratio_min": min(torch_times) / min(jax_times),
    })
    # The architecture's useful FLOPs over segjax's time, comparable with torch's rate.
    result["useful_gflops_per_sec"] = result["torch_flops_per_step"] / step_time / 1e9
    peak = result["mfu_peak_gflops"]
    result["useful_mfu"] = result["useful_gflops_per_sec"] / peak
    result["torch_mfu"] = result["torch_gflops_per_sec"] / peak
    torch_memory = torch_trainer.peak_memory_bytes()
    if torch_memory is not None:
      result["torch_peak_memory_bytes"] = torch_memory
  result["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
  summary = (f"segjax: {step_time:.3f} s per step (median of {steps}), "
             f"{result['cpu_s_per_step']:.2f} CPU-s per step, "
             f"{result['images_per_sec']:.2f} images/s, {result['gflops_per_sec']:.1f} GFLOP/s "
             f"({100 * result['fraction_of_matmul_peak']:.0f}% of {matmul_peak:.0f} GFLOP/s matmul; "
             f"MFU {100 * result['mfu']:.1f}% of {result['mfu_peak_gflops']:.0f} GFLOP/s, "
             f"{result['mfu_basis']}), "
             f"peak memory {result['peak_memory_bytes'] / 2 ** 20:.0f} MiB")
  log(summary)
  if torch_times:
    log(f"torch: {result['torch_step_time_s']:.3f} s per step, "
        f"{result['torch_cpu_s_per_step']:.2f} CPU-s per step, "
        f"{result['torch_images_per_sec']:.2f} images/s, "
        f"{result['torch_gflops_per_sec']:.1f} GFLOP/s; segjax/torch images/s ratio "
        f"{result['ratio']:.2f} (CPU time ratio {result['cpu_ratio']:.2f}, fastest steps "
        f"{result['ratio_min']:.2f})")
  log(f"load average at the end: {result['load_average_end']}")
  return result


def _utilisation(dtype: str, flops_per_step: float, step_time: float,
                 matmul_peak_gflops: float) -> dict:
  """MFU of the step against the devices' datasheet peak, else the measured matmul peak."""
  import jax
  device = jax.devices()[0]
  precision = device_peaks.peak_precision(device.platform, dtype,
                                          jax.config.jax_default_matmul_precision)
  peak = device_peaks.peak_flops(device.device_kind, precision)
  result = {"device_kind": device.device_kind}
  if peak:
    result.update(peak_precision=precision, mfu_peak_gflops=peak * jax.device_count() / 1e9,
                  mfu_basis=f"datasheet {precision} peak of {jax.device_count()} "
                            f"{device.device_kind}")
  else:
    result.update(peak_precision="", mfu_peak_gflops=matmul_peak_gflops,
                  mfu_basis="measured float32 matmul peak")
  result["mfu"] = flops_per_step / step_time / 1e9 / result["mfu_peak_gflops"]
  return result


def _torch_trainer(config, num_classes: int, channels: int, host_batch: dict, device: str,
                   channels_last: bool | None):
  try:
    from benchmarks import torch_models
  except ImportError:
    # Run from elsewhere than the repository root: the checkout holds `benchmarks/`.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import torch_models
  return torch_models.TorchTrainer(config, num_classes, channels, host_batch, device,
                                   channels_last)


def define_flags() -> None:
  """The command's flags (defined only when run as a command, so importing
  this module leaves absl's global flags alone)."""
  config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
  flags.DEFINE_integer("steps", 20, "Train steps timed (per framework).")
  flags.DEFINE_integer("warmup", 3, "Train steps run before timing (per framework).")
  flags.DEFINE_enum("compare", "", ["", "torch"], "Also time the same model in this framework.")
  flags.DEFINE_integer("num_classes", None, "Classes of the model's output "
                       "(default: config.dataset.num_classes).")
  flags.DEFINE_integer("matmul_size", 4096, "Side of the square float32 matmul for the peak rate.")
  flags.DEFINE_integer("matmul_repeats", 5, "Matmuls timed for the peak rate (the best counts).")
  flags.DEFINE_enum("torch_channels_last", "auto", ["auto", "true", "false"],
                    "PyTorch's memory layout: channels-last (NHWC) or not; auto: on GPU only.")
  flags.mark_flags_as_required(["config"])


def check_torch_available() -> None:
  """A CommandError when PyTorch, which `--compare torch` runs, is not installed (found,
  not imported: the peak memory is read before PyTorch is imported)."""
  import importlib.util
  from segjax import cli
  if importlib.util.find_spec("torch") is None:
    raise cli.CommandError("--compare torch needs PyTorch: pip install segjax[torch]")


def main(argv):
  from segjax import cli
  from segjax.training import config_check
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  retained = host_memory.configure()  # Idempotent: the command set it before importing JAX.
  logging.set_verbosity(logging.WARNING)
  if FLAGS.steps < 1 or FLAGS.warmup < 0:
    raise cli.CommandError(f"--steps {FLAGS.steps} --warmup {FLAGS.warmup}: need steps >= 1 "
                           "and warmup >= 0")
  num_classes = FLAGS.num_classes or FLAGS.config.dataset.num_classes
  if not num_classes or num_classes < 1:
    raise cli.CommandError(f"the model needs a class count: --num_classes (or "
                           f"config.dataset.num_classes) is {num_classes!r}")
  config_check.check(FLAGS.config)  # The step is built on the devices as training builds it.
  if FLAGS.compare == "torch":
    import jax
    if jax.default_backend() not in ("cpu", "gpu"):
      raise cli.CommandError(f"--compare torch runs on CPU or GPU only, not "
                             f"{jax.default_backend()}")
    check_torch_available()
  result = run(FLAGS.config, FLAGS.steps, FLAGS.warmup, FLAGS.compare, FLAGS.num_classes,
               FLAGS.matmul_size, FLAGS.matmul_repeats, log=lambda s: print(s, flush=True),
               torch_channels_last={"auto": None, "true": True, "false": False}[
                   FLAGS.torch_channels_last])
  result["host_memory"] = "retain" if retained else "release"
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  host_memory.configure()  # First thing: before JAX (imported by segjax.cli) starts threads.
  from segjax import cli
  define_flags()
  cli.run(main)
