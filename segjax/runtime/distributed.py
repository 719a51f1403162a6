"""Multi-process start-up with JAX's own runtime.

A run is multi-process when the `--coordinator_address`, `--num_processes`
and `--process_id` flags say so, or when it starts under a cluster manager
that `jax.distributed.initialize()` detects by itself (SLURM with more than
one task, Cloud TPU pod slices, Kubernetes/MPI launchers that set the JAX
coordinator variables). On a single machine nothing is initialised.
"""

from __future__ import annotations

import os

import jax

_CLUSTER_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")


def _cluster_detected() -> bool:
  if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ:
    return True
  return any(os.environ.get(name) for name in _CLUSTER_VARIABLES)


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Initialises `jax.distributed` when the run spans several processes."""
  explicit = coordinator_address is not None
  if explicit and (num_processes is None or process_id is None):
    raise ValueError("--coordinator_address needs --num_processes and --process_id")
  if not explicit and not _cluster_detected():
    return
  # CPU devices of different processes talk through gloo; GPUs and TPUs ignore this.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if explicit:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  else:
    jax.distributed.initialize()
