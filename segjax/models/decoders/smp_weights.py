"""SMP decoder and head weights -> the flax variables of `segjax.models.decoders`.

The flax modules carry SMP's state-dict names with dots as underscores below the
first component: `decoder.blocks.0.conv1.0.weight` -> params `decoder/blocks_0_conv1_0/
kernel`, `segmentation_head.0.bias` -> `segmentation_head/0/bias`. Leaves: a 4-D
`weight` (O, I/groups, kh, kw) -> `kernel` (kh, kw, I/groups, O); a 1-D `weight` (a
norm's) -> `scale`; `bias` -> `bias`; `running_mean` / `running_var` -> batch_stats
`mean` / `var`; `num_batches_tracked` is dropped. numpy only: state-dict values may be
numpy arrays or CPU torch tensors (anything `np.asarray` takes).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

PREFIXES = ("decoder", "segmentation_head")


def convert(state_dict: Mapping[str, Any], prefixes=PREFIXES) -> dict[str, dict]:
  """{"params": ..., "batch_stats": ...} nested dicts of float32 numpy arrays for the
  entries of `state_dict` under `prefixes` (others, e.g. `encoder.*`, are left out)."""
  variables: dict[str, dict] = {"params": {}, "batch_stats": {}}
  for key, value in state_dict.items():
    top, *middle, leaf = key.split(".")
    if top not in prefixes or leaf == "num_batches_tracked":
      continue
    if not middle:
      raise ValueError(f"SMP state-dict entry {key!r} has no module name")
    array = np.asarray(value, np.float32)
    if leaf == "weight":
      collection, name = "params", "kernel" if array.ndim == 4 else "scale"
      if array.ndim == 4:
        array = array.transpose(2, 3, 1, 0)
    elif leaf == "bias":
      collection, name = "params", "bias"
    elif leaf in ("running_mean", "running_var"):
      collection, name = "batch_stats", leaf[len("running_"):]
    else:
      raise ValueError(f"SMP state-dict entry {key!r}: unknown parameter {leaf!r}")
    module = variables[collection].setdefault(top, {}).setdefault("_".join(middle), {})
    module[name] = array
  return variables


def load(variables: Mapping[str, Any], state_dict: Mapping[str, Any],
         prefixes=PREFIXES) -> dict:
  """`variables` (as a model's `init` returns them) with every leaf under `prefixes`
  replaced by SMP's weights, same dtypes as before.

  Raises:
    ValueError: an SMP entry with no flax counterpart, a shape that differs, or a flax
      leaf under `prefixes` that SMP's state dict does not give.
  """
  import jax
  import jax.numpy as jnp

  converted = convert(state_dict, prefixes)
  result = {name: dict(tree) for name, tree in variables.items()}
  for collection in ("params", "batch_stats"):
    for top in prefixes:
      target = variables.get(collection, {}).get(top)
      source = converted[collection].get(top)
      if target is None and source is None:
        continue
      flat_target = _flatten(target or {})
      flat_source = _flatten(source or {})
      if set(flat_target) != set(flat_source):
        missing = sorted(set(flat_target) - set(flat_source))
        extra = sorted(set(flat_source) - set(flat_target))
        raise ValueError(f"{collection}/{top}: SMP weights lack {missing[:5]} and have "
                         f"no place for {extra[:5]} (another architecture or options?)")
      for path, leaf in flat_target.items():
        if tuple(leaf.shape) != flat_source[path].shape:
          raise ValueError(f"{collection}/{top}/{'/'.join(path)}: shape "
                           f"{flat_source[path].shape} in the SMP weights, "
                           f"{tuple(leaf.shape)} in the model")
      result[collection][top] = jax.tree_util.tree_map(
          lambda leaf, new: jnp.asarray(new, leaf.dtype), target, source)
  return result


def _flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(_flatten(value, prefix + (key,)))
    else:
      flat[prefix + (key,)] = value
  return flat
