"""Alternating timing of single ops, shared by the per-op scripts here."""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import numpy as np


def torch_backward(layer, x: np.ndarray, cotangent: np.ndarray) -> Callable[[], None]:
  """A closure running `layer` forward and backward on NHWC arrays (input and weight grads)."""
  import torch
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
  gt = torch.from_numpy(cotangent.transpose(0, 3, 1, 2).copy())

  def step():
    layer.zero_grad(set_to_none=True)
    xt.grad = None
    layer(xt).backward(gt)

  return step


def median_ms(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
  """Each function once to warm up, then `repeats` rounds of one call each in turn."""
  for fn in fns.values():
    fn()
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def print_table(names: list[str], layers, repeats: int, width: int = 9) -> None:
  """One row of median ms per layer, then the totals and the load average.

  Args:
    names: the column names, the keys of each layer's functions.
    layers: iterable of (label, GFLOP, {name: function}), built lazily.
  """
  print(f"{'shape (N,H,W,Cin->Cout)':28s} {'GFLOP':>6s} " + " ".join(f"{n:>{width}s}"
                                                                 for n in names))
  totals = dict.fromkeys(names, 0.0)
  for label, gflop, fns in layers:
    med = median_ms(fns, repeats)
    for name in names:
      totals[name] += med[name]
    print(f"{label:28s} {gflop:6.2f} " + " ".join(f"{med[n]:{width}.1f}" for n in names),
          flush=True)
  print(f"{'total':28s} {'':6s} " + " ".join(f"{totals[n]:{width}.1f}" for n in names))
  print(f"load average {os.getloadavg()}")
