"""Seeded weights shared by the PyTorch fixture scripts and the equivalence tests.

The fixture scripts (tests/fixtures/make_*.py, run once in an environment with
torch) fill a PyTorch module's state dict with `seeded_state_dict(shapes)` and
save only the names, shapes, input and outputs. The tests regenerate the same
weights from the saved names and shapes, so no weights are stored and torch is
not needed to run the tests. Uses numpy only.
"""

from __future__ import annotations

import math
import zlib
from typing import Mapping, Sequence

import numpy as np


def seeded_array(name: str, shape: Sequence[int], seed: int = 0) -> np.ndarray:
  """A float32 array for the state-dict entry `name`, scaled so that deep networks keep
  activations of order one: He-scaled kernels, BatchNorm scales near 1, positive
  running variances."""
  rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
  shape = tuple(int(s) for s in shape)
  leaf = name.rsplit(".", 1)[-1]
  if leaf == "running_var":
    return (0.5 + rng.random(shape)).astype(np.float32)
  if leaf == "running_mean":
    return (0.1 * rng.standard_normal(shape)).astype(np.float32)
  if len(shape) >= 2:
    fan_in = math.prod(shape[1:])
    return (rng.standard_normal(shape) * math.sqrt(1.0 / fan_in)).astype(np.float32)
  if leaf == "weight":
    return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
  return (0.1 * rng.standard_normal(shape)).astype(np.float32)


def seeded_state_dict(shapes: Mapping[str, Sequence[int]], seed: int = 0
                      ) -> dict[str, np.ndarray]:
  """{name: array} for every floating-point entry of `shapes` (name -> shape)."""
  return {name: seeded_array(name, shape, seed) for name, shape in shapes.items()
          if not name.endswith("num_batches_tracked")}
