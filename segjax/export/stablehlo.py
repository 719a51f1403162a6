"""The inference function as StableHLO (`jax.export`), with symbolic batch and image size.

The batch is always symbolic. Height and width are symbolic multiples of the
model's total stride where the model traces for every such size (proved by
tracing with `jax.export`'s symbolic shapes, not by sampling sizes); otherwise
they are fixed at the training size.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import numpy as np
from jax import export as jax_export

BATCH = "batch"


def _spec(stride: int | None, size: tuple[int, int], channels: int) -> jax.ShapeDtypeStruct:
  if stride is None:
    text = f"{BATCH}, {size[0]}, {size[1]}, {channels}"
  else:
    factor = "" if stride == 1 else f"{stride}*"
    text = f"{BATCH}, {factor}height, {factor}width, {channels}"
  return jax.ShapeDtypeStruct(jax_export.symbolic_shape(text), np.uint8)


def _check_traces(fn: Callable, spec: jax.ShapeDtypeStruct) -> None:
  """Raises unless `fn` traces for every size `spec` stands for, keeping its height and width."""
  out_shape = jax.eval_shape(fn, spec).shape
  if tuple(out_shape[:3]) != tuple(spec.shape[:3]):
    raise ValueError(f"output shape {out_shape} does not follow the input's {spec.shape}")


def export(fn: Callable, size: tuple[int, int], channels: int,
           platforms: Sequence[str] = ("cpu",), strides: Sequence[int] | None = None
           ) -> tuple[jax_export.Exported, dict]:
  """`fn` exported for `platforms`, and its input size rule.

  Args:
    fn: uint8 (N, H, W, C) -> an array (N, H, W, ...).
    size: the training (height, width); the stride found divides both.
    strides: increasing strides to try, each a multiple of the one before
      (default: the powers of two dividing both sizes).
  Returns:
    (exported, rule): rule is {"multiple_of": stride} for symbolic height and
    width, or {"fixed": [H, W], "reason": why} when the model allows no other size.
  """
  # Powers of two dividing both training dimensions; a model valid at stride s is
  # valid at 2s, so the smallest valid one is found by bisection.
  if strides is None:
    largest = math.gcd(*size) & -math.gcd(*size)
    strides = [2 ** k for k in range(largest.bit_length())]
  failures = {}

  def traces(stride):
    try:
      _check_traces(fn, _spec(stride, size, channels))
      return True
    except Exception as error:  # Symbolic tracing fails in many ways: all mean "not here".
      failures[stride] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
      return False

  lower = lambda spec: jax_export.export(jax.jit(fn), platforms=tuple(platforms))(spec)
  if not traces(strides[-1]):
    return lower(_spec(None, size, channels)), {"fixed": list(size), "reason": (
        f"the model does not trace for symbolic sizes that are multiples of {strides[-1]} "
        f"({failures[strides[-1]]})")}
  low, high = 0, len(strides) - 1
  while low < high:  # strides[high] traces; does a smaller one?
    middle = (low + high) // 2
    if traces(strides[middle]):
      high = middle
    else:
      low = middle + 1
  return lower(_spec(strides[high], size, channels)), {"multiple_of": strides[high]}
