"""Starting a run from another run's weights: `config.init_from` and `config.init_from_step`.

Parameters and BatchNorm statistics whose path and shape match the new
model's are copied; the others (e.g. a classifier with another class count)
keep their initial values. The optimizer starts fresh. Applied only when a
run starts, never on resume: the workdir's own checkpoint wins.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from flax import traverse_util

from segjax.training import checkpointing
from segjax.training.config_check import ConfigError

COLLECTIONS = ("params", "batch_stats")
REPORT_FILE = "init_from.json"


class InitFromError(ConfigError):
  """`config.init_from` names weights of which nothing fits the model."""


def merge(target: dict, source: dict) -> tuple[dict, dict]:
  """Copies `source`'s arrays into `target` where path and shape match.

  Args:
    target: {"params", "batch_stats"}: the initial variables (jax arrays).
    source: the same collections of another run (host arrays).
  Returns:
    (merged variables, each array on its target's sharding and in its dtype;
    report {"loaded": [path], "skipped_by_shape": [[path, source shape,
    target shape]], "missing": [path], "unused": [path]}), paths '/'-joined
    and starting with the collection.
  """
  flat_target = traverse_util.flatten_dict(target, sep="/")
  flat_source = traverse_util.flatten_dict(source, sep="/")
  report = {"loaded": [], "skipped_by_shape": [], "missing": [],
            "unused": sorted(set(flat_source) - set(flat_target))}
  merged = {}
  for path, initial in flat_target.items():
    loaded = flat_source.get(path)
    if loaded is None:
      report["missing"].append(path)
    elif tuple(loaded.shape) != tuple(initial.shape):
      report["skipped_by_shape"].append([path, list(loaded.shape), list(initial.shape)])
    else:
      report["loaded"].append(path)
      initial = jax.device_put(np.asarray(loaded, initial.dtype), initial.sharding)
    merged[path] = initial
  return traverse_util.unflatten_dict(merged, sep="/"), report


def load(config, state, workdir: str, log):
  """`state` with the matching weights of `config.init_from`; writes workdir/init_from.json.

  Raises:
    InitFromError: nothing matches (another model?).
    FileNotFoundError: no such workdir, checkpoint folder or step.
  """
  folder = checkpointing.state_folder(config.init_from,
                                      checkpointing.parse_step(config.init_from_step))
  source = checkpointing.read_variables(folder)
  target = {"params": state.params, "batch_stats": state.batch_stats or {}}
  merged, report = merge(target, {key: source.get(key) or {} for key in COLLECTIONS})
  total = len(report["loaded"]) + len(report["skipped_by_shape"]) + len(report["missing"])
  if not report["loaded"]:
    raise InitFromError(
        f"init_from={config.init_from!r}: none of the {total} parameter and statistics arrays "
        f"of model {config.model.name!r} matches {folder} by path and shape (another model? "
        f"its arrays are e.g. {', '.join(report['unused'][:3]) or 'none'}); name a run of the "
        "same architecture, or clear init_from")
  if jax.process_index() == 0:
    with open(os.path.join(workdir, REPORT_FILE), "w") as f:
      json.dump({"init_from": folder, **report}, f, indent=2)
  lines = [f"initialised from {folder}: {len(report['loaded'])} of {total} arrays loaded, "
           f"{len(report['skipped_by_shape'])} skipped by shape, {len(report['missing'])} "
           f"missing there (list in {workdir}/{REPORT_FILE})"]
  lines += [f"  skipped {path}: {tuple(there)} there, {tuple(here)} here"
            for path, there, here in report["skipped_by_shape"][:10]]
  lines += [f"  missing {path}" for path in report["missing"][:10]]
  log("\n".join(lines))
  params = merged["params"]
  return state.replace(params=params, batch_stats=merged.get("batch_stats", state.batch_stats),
                       ema_params=params if state.ema_params is not None else None)
