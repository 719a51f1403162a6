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

With `config.best_metric`, the best evaluated state is kept apart in
`checkpoints/best/<step>` with its record (metric, value, step), one at a
time, whatever `max_to_keep` deletes. Commands name a checkpoint by step
number, `best`, or nothing for the latest (`parse_step`, `open_checkpoint`).
"""

from __future__ import annotations

import json
import os
import time
import weakref

import jax
import numpy as np
import orbax.checkpoint as ocp

BEST = "best"  # The step name of the best checkpoint, and its folder under checkpoints/.
DATA_POSITION = "data_position"
_GRAIN_STATE = "data"  # Where checkpoints of per-process grain iterators kept it.


# Managers with a save started, whose writes may still be in flight.
_saving: weakref.WeakSet = weakref.WeakSet()


def create_manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), "checkpoints"),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
      item_names=("state", DATA_POSITION))


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


def create_best_manager(workdir: str) -> ocp.CheckpointManager:
  """checkpoints/best: the best evaluated state and its record, only the latest kept."""
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), "checkpoints", BEST),
      options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
      item_names=("state", BEST))


def save_best(manager: ocp.CheckpointManager, step: int, state, record: dict) -> None:
  """Saves `state` as the best, with `record` ({"metric", "value", "step"}); replaces the last."""
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             best=ocp.args.JsonSave(record)), force=True)
  _saving.add(manager)


def best_record(manager: ocp.CheckpointManager) -> dict | None:
  """The record saved with the best checkpoint, or None when there is none."""
  step = manager.latest_step()
  if step is None:
    return None
  return dict(manager.restore(step, args=ocp.args.Composite(best=ocp.args.JsonRestore()))[BEST])


class BestCheckpoint:
  """Keeps the best evaluated state under checkpoints/best (`config.best_metric`).

  `best_metric` names an evaluation metric to maximise, or "-NAME" to
  minimise; "" keeps none. The best value so far is restored from the saved
  record, so a resumed run compares with the best of the steps before it.
  """

  def __init__(self, metric: str, workdir: str, log):
    self.metric = metric
    self.manager = create_best_manager(workdir) if metric else None
    self.record = best_record(self.manager) if self.manager else None
    if self.record and self.record["metric"] != metric:
      log(f"best_metric changed from {self.record['metric']!r} to {metric!r}: the best "
          f"checkpoint (step {self.record['step']}) is replaced at the next evaluation")
      self.record = None
    elif self.record:
      log(f"best {metric} so far: {self.record['value']:.4f} at step {self.record['step']}")

  def update(self, step: int, state, metrics: dict) -> bool:
    """Saves `state` when its metrics are the best so far; True then."""
    if self.manager is None:
      return False
    value = metrics[self.metric.removeprefix("-")]
    if not np.isfinite(value):
      return False
    if self.record:
      if step == self.record["step"]:  # Redone after a resume: the same state, already kept.
        return True
      sign = -1 if self.metric.startswith("-") else 1
      if sign * value <= sign * self.record["value"]:
        return False
    self.record = {"metric": self.metric, "value": float(value), "step": int(step)}
    save_best(self.manager, step, state, self.record)
    return True

  def close(self) -> None:
    if self.manager is not None:
      self.manager.wait_until_finished()
      self.manager.close()


def parse_step(text: str | int | None) -> int | str | None:
  """A command's --step: a number, "best", or empty/None for the latest checkpoint."""
  if text is None or text == "":
    return None
  if isinstance(text, int) or text == BEST:
    return text
  if str(text).isdigit():
    return int(text)
  raise ValueError(f"--step {text!r}: use a step number, '{BEST}', or leave it out for the "
                   "latest checkpoint")


def open_checkpoint(workdir: str, step: int | str | None,
                    max_to_keep: int = 3) -> tuple[ocp.CheckpointManager, int]:
  """(manager, step) of a run's checkpoint: a step, "best" or None (the latest).

  Raises:
    FileNotFoundError: no such checkpoint, naming the steps there are.
  """
  if step == BEST:
    directory = os.path.join(os.path.abspath(workdir), "checkpoints", BEST)
    manager = create_best_manager(workdir) if os.path.isdir(directory) else None
    if manager is None or manager.latest_step() is None:
      if manager is not None:
        manager.close()
      raise FileNotFoundError(
          f"{workdir} has no best checkpoint ({directory} is empty or missing): the run was "
          "trained without config.best_metric, or has not evaluated yet. Name a step instead")
    return manager, manager.latest_step()
  manager = create_manager(workdir, max_to_keep)
  try:
    return manager, find_step(manager, step)
  except FileNotFoundError:
    manager.close()
    raise


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


def restore_checked(manager: ocp.CheckpointManager, step: int, abstract_state):
  """`restore`, and a CheckpointMismatchError when the checkpoint holds another train state."""
  try:
    return restore(manager, step, abstract_state)
  except Exception as error:  # Orbax and TensorStore raise many kinds.
    directory = os.path.join(os.fspath(manager.directory), str(step))
    mismatch = _mismatch(os.path.join(directory, "state"), abstract_state)
    if mismatch:
      raise CheckpointMismatchError(
          f"checkpoint {directory} holds a train state unlike the one the run's config builds "
          f"(another model or option?): {mismatch}") from error
    raise


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


def state_folder(path: str, step: int | str | None = None) -> str:
  """The saved train state's folder of a workdir, its checkpoints/ folder, or one checkpoint.

  `step` (a number, "best", or None for the latest) chooses among the
  checkpoints of a workdir or checkpoints/ folder.
  """
  if os.path.isdir(os.path.join(path, "state")):
    return os.path.join(path, "state")
  directory = os.path.join(path, "checkpoints")
  directory = directory if os.path.isdir(directory) else path
  if step == BEST:
    directory, step = os.path.join(directory, BEST), None
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{directory}: no such checkpoint folder")
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      create=False, read_only=True), item_names=("state",))
  try:
    step = find_step(manager, step)
  finally:
    manager.close()
  return os.path.join(directory, str(step), "state")


def read_variables(folder: str) -> dict:
  """{"params", "batch_stats"} of a saved train state (`state_folder`), as host numpy arrays.

  The parameters are the ones its evaluations used: the moving average when
  the run kept one (`config.ema_decay`). Reads nothing else (no optimizer
  state) and needs neither the model nor the devices it was saved from.
  """
  metadata = ocp.StandardCheckpointer().metadata(folder).item_metadata.tree
  params = "ema_params" if metadata.get("ema_params") else "params"
  wanted = {key: metadata[key] for key in (params, "batch_stats") if metadata.get(key)}
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
  with ocp.PyTreeCheckpointer() as checkpointer:
    variables = checkpointer.restore(folder, args=ocp.args.PyTreeRestore(
        item=wanted, restore_args=restore_args, partial_restore=True))
  variables["params"] = variables.pop(params)
  return variables
