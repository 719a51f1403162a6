"""Which XLA:CPU kernels run the train step's convolutions (`config.cpu_conv_kernels`).

XLA:CPU (jaxlib 0.10) runs a convolution with more than 16 input or output
features through YNNPACK and the others through Eigen. With the compiler option
`xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT` every
convolution goes to Eigen and only matrix products to YNNPACK. Neither is faster
for every model: on a 2-core CPU, Eigen made U-Net's train step 1.10x to 1.18x
faster, the conv autoencoder's 1.32x to 1.59x, and SegNet's 0.92x as fast
(experiments/performance.md, "Convolution gradients"). The setting:

- "default": XLA's own choice.
- "eigen": every convolution through Eigen.
- "autotune": compile the step both ways, time a few steps of each (on a copy
  of the initial state, so training starts from the same state), keep the faster.
  Costs one more compilation and `2 * (1 + AUTOTUNE_STEPS)` steps at start-up.

Only the train step is affected, and only on the CPU backend; elsewhere the
setting is ignored. Both ways compute the same function; results differ only by
float summation order.

Inference (the forward pass alone: evaluation, `segjax.predict`, exported
models) is compiled with `inference_compiler_options(platform)`: on the CPU,
`LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT`, which sends every convolution to Eigen
and each matrix product alone to YNNPACK. With XLA's default, YNNPACK also
fuses the convolutions around a matrix product into one graph; alone, U-Net's
3x3 convolutions ran at 55 to 118 GFLOP/s there and at 63 to 121 with Eigen on
a 2-core CPU, and whole forward passes were 1.29x (U-Net, batch 4, 256x256)
and 1.42x (SegNet, batch 16) faster with the option
(experiments/inference_benchmark/forward_kernels.log;
experiments/inference_benchmark.md, "Profile").
"""

from __future__ import annotations

import functools
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

CHOICES = ("default", "eigen", "autotune")
COMPILER_OPTIONS = {
    "default": None,
    "eigen": {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"},
}
AUTOTUNE_STEPS = 3  # Timed steps per choice, after one untimed step.
INFERENCE_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def inference_compiler_options(platform: str | None = None) -> dict | None:
  """`jax.jit` compiler options for a forward pass on `platform` (default: JAX's default
  backend; see the module docs): None but on the CPU, and there only if this jaxlib
  accepts them."""
  if (platform or jax.default_backend()) != "cpu" or not _accepts(tuple(INFERENCE_COMPILER_OPTIONS.items())):
    return None
  return dict(INFERENCE_COMPILER_OPTIONS)


@functools.cache
def _accepts(options: tuple) -> bool:
  try:
    jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(
        np.float32(0)).compile()
    return True
  except jax.errors.JaxRuntimeError:
    return False


def check(choice: str) -> None:
  if choice not in CHOICES:
    raise ValueError(f"config.cpu_conv_kernels={choice!r} is not one of {', '.join(CHOICES)}")


def resolve(choice: str, build_step: Callable, state, example_batch: Callable,
            log=print) -> tuple[str, Callable]:
  """The choice to use on this backend and the jitted train step built with it.

  Args:
    choice: one of CHOICES.
    build_step: compiler options (a dict or None) -> jitted train step
      `(state, batch) -> (state, metrics)`, which may donate its state.
    state: the initial train state ("autotune" steps a copy of it).
    example_batch: () -> a device batch of the training shape ("autotune" only).
    log: where the autotune timings are reported.
  """
  check(choice)
  if jax.default_backend() != "cpu":
    return "default", build_step(None)
  if choice != "autotune":
    return choice, build_step(COMPILER_OPTIONS[choice])
  batch = example_batch()
  steps = {}
  for name, options in COMPILER_OPTIONS.items():
    steps[name] = build_step(options)
    try:  # Compiled now and cached: the step's first call does not compile again.
      steps[name].lower(state, batch).compile()
    except jax.errors.JaxRuntimeError as error:
      if options is None:
        raise
      log(f"cpu_conv_kernels: {name} unavailable in jaxlib {jax.__version__} "
          f"({str(error).splitlines()[0]}); using default")
      return "default", steps["default"]
  medians = _time_alternately(steps, state, batch)
  best = min(medians, key=medians.get)
  if jax.process_count() > 1:  # Every process must run the same program.
    from jax.experimental import multihost_utils
    names = list(steps)
    best = names[int(multihost_utils.broadcast_one_to_all(np.int32(names.index(best))))]
  log("cpu_conv_kernels autotune: " + ", ".join(
      f"{name} {seconds:.3f} s/step" for name, seconds in medians.items()) + f"; using {best}")
  return best, steps[best]


def _time_alternately(steps: dict, state, batch) -> dict[str, float]:
  """Median seconds per step of each jitted step, one step of each in turn.

  The steps take turns on one copy of `state` (each returns the state the next
  one takes), so tuning holds one extra train state, not one per choice.
  """
  state = jax.tree.map(jnp.copy, state)
  times = {name: [] for name in steps}
  for round_index in range(1 + AUTOTUNE_STEPS):
    for name, step in steps.items():
      start = time.perf_counter()
      state, metrics = step(state, batch)
      jax.block_until_ready((state, metrics))
      if round_index:
        times[name].append(time.perf_counter() - start)
  return {name: statistics.median(seconds) for name, seconds in times.items()}
