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


def _export(fn: Callable, spec: jax.ShapeDtypeStruct, platforms: Sequence[str]):
  exported = jax_export.export(jax.jit(fn), platforms=tuple(platforms))(spec)
  out_shape = exported.out_avals[0].shape
  if tuple(out_shape[:3]) != tuple(spec.shape[:3]):
    raise ValueError(f"output shape {out_shape} does not follow the input's {spec.shape}")
  return exported


def export(fn: Callable, size: tuple[int, int], channels: int,
           platforms: Sequence[str] = ("cpu",)) -> tuple[jax_export.Exported, dict]:
  """`fn` exported for `platforms`, and its input size rule.

  Args:
    fn: uint8 (N, H, W, C) -> an array (N, H, W, ...).
    size: the training (height, width); the stride found divides both.
  Returns:
    (exported, rule): rule is {"multiple_of": stride} for symbolic height and
    width, or {"fixed": [H, W], "reason": why} when the model allows no other size.
  """
  # Powers of two dividing both training dimensions; a model valid at stride s is
  # valid at 2s, so the smallest valid one is found by bisection.
  largest = math.gcd(*size) & -math.gcd(*size)
  strides = [2 ** k for k in range(largest.bit_length())]
  failures = {}

  def attempt(stride):
    try:
      return _export(fn, _spec(stride, size, channels), platforms)
    except Exception as error:  # Symbolic tracing fails in many ways: all mean "not here".
      failures[stride] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
      return None

  best = attempt(strides[-1])
  if best is None:
    exported = _export(fn, _spec(None, size, channels), platforms)
    return exported, {"fixed": list(size), "reason": (
        f"the model does not trace for symbolic sizes that are multiples of {strides[-1]} "
        f"({failures[strides[-1]]})")}
  low, high, found = 0, len(strides) - 1, strides[-1]
  while low < high:  # strides[high] is valid; is a smaller one?
    middle = (low + high) // 2
    exported = attempt(strides[middle])
    if exported is None:
      low = middle + 1
    else:
      high, best, found = middle, exported, strides[middle]
  return best, {"multiple_of": found}
