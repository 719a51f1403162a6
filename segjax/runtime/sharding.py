"""The device mesh and how arrays are laid out on it.

One code path for one device, many devices and many hosts. The mesh has two
axes, `data` and `fsdp` (`config.mesh`); batches are split over both. With
`fsdp` = 1 (the default) the train state is replicated (pure data
parallelism); with `fsdp` > 1 every parameter and optimizer-state array is
split along its largest dimension that divides by the `fsdp` size, and XLA
gathers it where a layer needs it.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)


def create_mesh(mesh_config: ml_collections.ConfigDict | None = None, devices=None) -> Mesh:
  """A (data, fsdp) mesh over `devices` (default: all devices of all processes).

  `mesh_config.data` = -1 takes what `fsdp` leaves.
  """
  devices = np.asarray(jax.devices() if devices is None else devices)
  fsdp = int(mesh_config.fsdp) if mesh_config is not None else 1
  data = int(mesh_config.data) if mesh_config is not None else -1
  if fsdp < 1 or devices.size % fsdp:
    raise ValueError(f"mesh.fsdp={fsdp} must be >= 1 and divide the device count ({devices.size})")
  if data == -1:
    data = devices.size // fsdp
  if data * fsdp != devices.size:
    raise ValueError(f"mesh.data={data} x mesh.fsdp={fsdp} must equal the device count "
                     f"({devices.size}); set mesh.data=-1 to infer it")
  return Mesh(devices.reshape(data, fsdp), (DATA_AXIS, FSDP_AXIS))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def array_sharding(mesh: Mesh, shape: tuple[int, ...]) -> NamedSharding:
  """Splits the largest dimension divisible by the fsdp size; else replicates."""
  size = mesh.shape[FSDP_AXIS]
  if size == 1:
    return replicated(mesh)
  candidates = [d for d in np.argsort(shape)[::-1] if shape[d] % size == 0 and shape[d] >= size]
  if not candidates:
    return replicated(mesh)
  spec = [None] * len(shape)
  spec[candidates[0]] = FSDP_AXIS
  return NamedSharding(mesh, PartitionSpec(*spec))


def state_shardings(mesh: Mesh, abstract_state):
  """Shardings for every array of a (possibly abstract) train state."""
  return jax.tree.map(lambda x: array_sharding(mesh, tuple(x.shape)), abstract_state)


def check_batch_size(batch_size: int, mesh: Mesh, key: str = "batch_size") -> None:
  if batch_size % mesh.size:
    raise ValueError(f"{key}={batch_size} must divide by the number of devices ({mesh.size}); "
                     f"set --config.{key} to a multiple of {mesh.size}")


def put_batch(batch: dict, sharding: NamedSharding) -> dict:
  """Places this process's part of a global batch on the mesh (no host sync)."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
