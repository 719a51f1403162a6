"""Orbax checkpoints of the train state and of the data iterator position."""

from __future__ import annotations

import os

import grain
import orbax.checkpoint as ocp


def create_manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), "checkpoints"),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
      item_names=("state", "data"))


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator=None) -> None:
  items = {"state": ocp.args.StandardSave(state)}
  if data_iterator is not None:
    items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
  manager.save(step, args=ocp.args.Composite(**items))


def restore(manager: ocp.CheckpointManager, step: int, abstract_state, data_iterator=None):
  """Restores the state into the shardings of `abstract_state` (and the iterator in place)."""
  items = {"state": ocp.args.StandardRestore(abstract_state)}
  if data_iterator is not None:
    items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
  return manager.restore(step, args=ocp.args.Composite(**items))["state"]
