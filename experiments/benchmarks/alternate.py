"""Alternating timing of compiled train steps, shared by the A/B scripts here."""

from __future__ import annotations

import contextlib
import functools
import os
import statistics
import time
from typing import Callable

import jax

from segjax import benchmark
from segjax.data import pipeline
from segjax.models import factory
from segjax.runtime import sharding as sharding_lib
from segjax.training import trainer as trainer_lib


def run(steps: dict, num_warmup: int, num_steps: int, torch_trainer=None):
  """Runs one step of each variant in turn (then PyTorch's, if given), repeatedly.

  Args:
    steps: name -> [compiled step, state, batch]; the state entry is updated.
    num_warmup: untimed rounds first.
    num_steps: timed rounds.
    torch_trainer: a `benchmarks.torch_models.TorchTrainer`, timed as "torch".

  Returns:
    (times, cpu, losses): name -> list of wall seconds, of process CPU seconds
    (timed rounds only), and of every round's loss (variants only).
  """
  names = list(steps) + ["torch"] * (torch_trainer is not None)
  times = {name: [] for name in names}
  cpu = {name: [] for name in names}
  losses = {name: [] for name in steps}
  for index in range(num_warmup + num_steps):
    for name, (compiled, state, batch) in steps.items():
      wall, process = time.perf_counter(), time.process_time()
      state, metrics = compiled(state, batch)
      jax.block_until_ready((state, metrics))
      if index >= num_warmup:
        times[name].append(time.perf_counter() - wall)
        cpu[name].append(time.process_time() - process)
      losses[name].append(float(metrics["loss"]))
      steps[name][1] = state
    if torch_trainer is not None:
      process = time.process_time()
      seconds, _ = torch_trainer.step()
      if index >= num_warmup:
        times["torch"].append(seconds)
        cpu["torch"].append(time.process_time() - process)
  return times, cpu, losses


def report(times: dict, cpu: dict, losses: dict) -> None:
  """One line per variant: median wall and CPU seconds, speed-up against the first."""
  first = next(iter(losses))
  base = statistics.median(times[first])
  for name in losses:
    median = statistics.median(times[name])
    print(f"{name:10s} median {median:.3f} s (min {min(times[name]):.3f}), "
          f"{statistics.median(cpu[name]):.2f} CPU-s, speed-up vs {first} {base / median:.2f}x; "
          f"losses {[round(v, 4) for v in losses[name][:4]]}", flush=True)


@contextlib.contextmanager
def replaced(owner, name: str, value):
  """`owner.name` set to `value` inside the context (a module constant or function)."""
  original = getattr(owner, name)
  setattr(owner, name, value)
  try:
    yield
  finally:
    setattr(owner, name, original)


def trainer_and_batch(config, num_classes: int, host: dict):
  """A `trainer_lib.Trainer` built as `segjax.benchmark` builds it, and `host` on its batch sharding."""
  size = config.dataset.image_size
  channels = 1 if config.dataset.grayscale else 3
  trainer = trainer_lib.Trainer(config, factory.create_model(config, num_classes), num_classes,
                          (size, size, channels), config.dataset.ignore_index)
  return trainer, sharding_lib.put_batch(host, trainer.batch_sharding)


def compile_variants(config, num_classes: int,
                     variants: dict[str, Callable[[], contextlib.AbstractContextManager]]):
  """Each variant's step, traced inside its context; returns (steps, host batch).

  steps: name -> [compiled step, state, batch], as `run` takes them. Every variant
  is built as `segjax.benchmark` builds the step (factory.create_model,
  trainer_lib.Trainer, the same synthetic batch, the same initial parameters).
  """
  size = config.dataset.image_size
  channels = 1 if config.dataset.grayscale else 3
  print(f"{config.model.name} batch {config.batch_size}, {size}x{size}; jax {jax.__version__}; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load average {os.getloadavg()}",
        flush=True)
  host = pipeline.synthetic_batch(config.batch_size, size, size, channels, num_classes)
  steps = {}
  for name, context in variants.items():
    with context():
      trainer, batch = trainer_and_batch(config, num_classes, host)
      start = time.perf_counter()
      compiled = trainer.train_step.lower(trainer.state, batch).compile()
    print(f"{name}: compiled in {time.perf_counter() - start:.1f} s, "
          f"{benchmark.cost_flops(compiled) / 1e9:.1f} GFLOP per step (XLA)", flush=True)
    steps[name] = [compiled, trainer.state, batch]
  return steps, host


def ab_main(variants: dict[str, Callable[..., contextlib.AbstractContextManager]],
            pass_config: bool = False) -> None:
  """The command line of a two-variant A/B script: a config, its overrides, step counts.

  With `pass_config`, each variant's context is made with the config as argument.
  """
  from absl import app, flags
  from ml_collections import config_flags
  config_flag = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
  steps_flag = flags.DEFINE_integer("steps", 8, "Timed steps per variant.")
  warmup_flag = flags.DEFINE_integer("warmup", 2, "Untimed steps per variant first.")
  classes_flag = flags.DEFINE_integer("num_classes", None, "Default: config.dataset.num_classes.")

  def main(argv):
    del argv
    from segjax.runtime import host_memory
    print(f"host memory retained: {host_memory.configure()}")  # As training does.
    config = config_flag.value
    contexts = variants
    if pass_config:
      contexts = {name: functools.partial(context, config) for name, context in variants.items()}
    steps, _ = compile_variants(config, classes_flag.value or config.dataset.num_classes,
                                contexts)
    report(*run(steps, warmup_flag.value, steps_flag.value))
    print(f"load average {os.getloadavg()}")

  app.run(main)
