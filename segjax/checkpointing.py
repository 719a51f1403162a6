"""Orbax checkpoints of the train state and of the data iterator position.

The data position is global (a position in the training stream, JSON in the
`data_position` item), so it restores on any number of processes.
Checkpoints written before it was global hold grain's per-process iterator
state (a `data` item) instead; they resume at the batch of their step in the
global stream (logged: the examples from there on differ from those the
original run would have read).

A checkpoint being written lives in a temporary folder that Orbax renames
when complete, so a run killed mid-save leaves the previous checkpoints as
they were. A finished checkpoint that no longer restores (a truncated or
corrupted file) is reported, moved aside (never deleted) and skipped; one
that is sound but holds a train state unlike the config's (another model or
optimizer), or whose state restores but whose data-loader position does not
(another dataset, split or loader option), is an error, and stays where it
is. Saves complete in the background; `wait_for_saves` blocks until every
save this process started is complete, whatever else is failing.
"""

from __future__ import annotations

import json
import os
import time
import weakref

import jax
import orbax.checkpoint as ocp


# Managers with a save started, whose writes may still be in flight.
_saving: weakref.WeakSet = weakref.WeakSet()


def create_manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), "checkpoints"),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
      item_names=("state", DATA_POSITION))


DATA_POSITION = "data_position"
_GRAIN_STATE = "data"  # Where checkpoints of per-process grain iterators kept it.


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator=None) -> None:
  """Saves `state`, and `data_iterator.get_state()` (JSON bytes, the same on every process)."""
  items = {"state": ocp.args.StandardSave(state)}
  if data_iterator is not None:
    items[DATA_POSITION] = ocp.args.JsonSave(json.loads(data_iterator.get_state()))
  manager.save(step, args=ocp.args.Composite(**items), force=True)
  _saving.add(manager)


def wait_for_saves() -> None:
  """Blocks until the checkpoints being written by this process are complete."""
  for manager in list(_saving):
    manager.wait_until_finished()
    _saving.discard(manager)


def find_step(manager: ocp.CheckpointManager, step: int | None = None) -> int:
  """`step`, or the latest step when None; a FileNotFoundError when there is no such checkpoint."""
  step = manager.latest_step() if step is None else step
  if step is None or step not in manager.all_steps():
    raise FileNotFoundError(f"no checkpoint{'' if step is None else f' at step {step}'} in "
                            f"{os.fspath(manager.directory)} (steps there: "
                            f"{list(manager.all_steps())})")
  return step


def restore(manager: ocp.CheckpointManager, step: int, abstract_state):
  """The train state saved at `step`, in the shardings of `abstract_state`."""
  return manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))["state"]


def restore_data_position(manager: ocp.CheckpointManager, step: int, data_iterator,
                          log=print) -> None:
  """Moves `data_iterator` to the position saved at `step`.

  A checkpoint with grain's per-process state instead: to the start of global
  batch `step` (the state `{"batches": step}`; logged).
  """
  directory = os.path.join(os.fspath(manager.directory), str(step))
  if (not os.path.isdir(os.path.join(directory, DATA_POSITION))
      and os.path.isdir(os.path.join(directory, _GRAIN_STATE))):
    log(f"checkpoint {directory} holds the data position of each process's grain iterator "
        "(written before the position became global): training continues at the batch of "
        f"step {step + 1} of the global stream, so the examples from here on differ from those "
        "the original run would have read")
    data_iterator.set_state(json.dumps({"batches": step}).encode())
    return
  saved = manager.restore(step, args=ocp.args.Composite(
      **{DATA_POSITION: ocp.args.JsonRestore()}))[DATA_POSITION]
  data_iterator.set_state(json.dumps(saved).encode())


class CheckpointMismatchError(ValueError):
  """A sound checkpoint of a train state unlike the one the config builds."""


def _mismatch(directory: str, abstract_state) -> str | None:
  """How the arrays saved in `directory` differ from `abstract_state`'s, if they do.

  None as well when the checkpoint's metadata cannot be read (then it is damaged).
  """
  try:
    saved = jax.tree.leaves(ocp.StandardCheckpointer().metadata(directory).item_metadata.tree)
  except Exception:  # Unreadable metadata: damaged, not different.
    return None
  describe = lambda leaves: sorted(f"{x.dtype}{list(x.shape)}" for x in leaves)
  saved, expected = describe(saved), describe(jax.tree.leaves(abstract_state))
  if saved == expected:
    return None
  only_saved = [x for x in saved if x not in expected]
  only_expected = [x for x in expected if x not in saved]
  return (f"{len(saved)} arrays saved, {len(expected)} in the state this config builds; "
          f"saved only: {', '.join(only_saved[:4]) or '-'}; "
          f"built only: {', '.join(only_expected[:4]) or '-'}")


def restore_latest_valid(workdir: str, max_to_keep: int, abstract_state, data_iterator, log):
  """Restores the newest checkpoint that restores; returns (manager, state or None).

  Damaged checkpoints are renamed to `damaged_<step>_<time>` in the same folder.
  The data iterator moves only with a restored state.

  Raises:
    CheckpointMismatchError: a checkpoint is sound but of another train state,
      or its state restores and its data-loader position does not.
  """
  manager = create_manager(workdir, max_to_keep)
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      state = restore(manager, step, abstract_state)
    except Exception as error:  # Orbax and TensorStore raise many kinds.
      directory = os.fspath(manager.directory)
      mismatch = _mismatch(os.path.join(directory, str(step), "state"), abstract_state)
      if mismatch:
        manager.close()
        raise CheckpointMismatchError(
            f"checkpoint {directory}/{step} holds a train state unlike the one this config "
            f"builds (another model, optimizer or option?): {mismatch}. Resume with the config "
            "it was written with, or train in another --workdir") from error
      log(f"checkpoint {directory}/{step} is damaged and is skipped "
          f"({type(error).__name__}: {str(error)[:300]})")
      if jax.process_index() == 0:
        os.rename(os.path.join(directory, str(step)),
                  os.path.join(directory, f"damaged_{step}_{int(time.time())}"))
      manager.close()
      manager = create_manager(workdir, max_to_keep)
      continue
    if data_iterator is not None:
      try:
        restore_data_position(manager, step, data_iterator, log)
      except Exception as error:  # A restored state is never moved aside.
        manager.close()
        raise CheckpointMismatchError(
            f"checkpoint {os.fspath(manager.directory)}/{step}: the train state restores but "
            f"the data loader's position does not ({type(error).__name__}: {str(error)[:300]}). "
            "Was it written with another dataset, split or loader option? Resume with the "
            "config it was written with, or train in another --workdir") from error
    return manager, state
  return manager, None
