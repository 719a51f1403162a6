"""The device mesh and how arrays are laid out on it.

One code path for one device, many devices and many hosts: batches are split
over the `data` axis, the train state is replicated.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def create_mesh(devices=None) -> Mesh:
  """A 1-D mesh over `devices` (default: all devices of all processes)."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, mesh: Mesh, key: str = "batch_size") -> None:
  if batch_size % mesh.size:
    raise ValueError(f"{key}={batch_size} must divide by the number of devices ({mesh.size}); "
                     f"set --config.{key} to a multiple of {mesh.size}")


def put_batch(batch: dict, sharding: NamedSharding) -> dict:
  """Places this process's part of a global batch on the mesh (no host sync)."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
