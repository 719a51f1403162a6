"""A model's summary: module tree with output shapes, parameter counts and FLOPs per forward.

  python -m segjax.summary --config configs/segnet_skin.py[:ARG] [--config.KEY=VALUE ...]

The model is the config's, at the config's image size, with the dataset's
class count and channels (the dataset is prepared if it is not yet; or give
--num_classes and --num_channels). Nothing is compiled: one trace records each
module's output, and XLA's cost analysis of the lowered forward pass (batch 1,
inference mode) counts its floating-point operations. Every training run
writes the same summary to `model_summary.txt` in its workdir when it starts.
"""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from segjax.training import optim

SUMMARY_FILE = "model_summary.txt"


def _shape(tree) -> str:
  shapes = [tuple(x.shape) for x in jax.tree.leaves(tree) if hasattr(x, "shape")]
  return ", ".join("x".join(str(d) for d in shape) for shape in shapes)


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _format_count(count: float) -> str:
  for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
    if count >= size:
      return f"{count / size:.2f}{unit}"
  return f"{count:.0f}"


def summarize(model: nn.Module, variables, input_shape: tuple[int, int, int],
              frozen_patterns=(), max_depth: int = 3) -> str:
  """The summary text of `model` at inputs of `input_shape` (H, W, C).

  Args:
    variables: {"params", "batch_stats"}: arrays or ShapeDtypeStructs (only
      shapes are read).
    frozen_patterns: the parameter-path regexes training keeps fixed.
    max_depth: deeper modules are counted in their parents' rows only.
  """
  calls = {}

  def record(next_fun, args, kwargs, context):
    path = tuple(context.module.path)
    if context.method_name != "__call__" or path in calls or len(path) > max_depth:
      return next_fun(*args, **kwargs)
    calls[path] = None  # A row in call order, parents before their children.
    output = next_fun(*args, **kwargs)
    calls[path] = (type(context.module).__name__, _shape(output))
    return output

  def forward(variables, images):
    with nn.intercept_methods(record):
      return model.apply(variables, images, train=False)

  shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), variables)
  images = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  cost = jax.jit(forward).trace(shapes, images).lower().cost_analysis()
  flops = (cost or {}).get("flops")

  params = traverse_util.flatten_dict(shapes["params"])
  stats = traverse_util.flatten_dict(shapes.get("batch_stats") or {})
  frozen = traverse_util.flatten_dict(optim.frozen_mask(shapes["params"], frozen_patterns))
  frozen_count = sum(int(np.prod(params[k].shape)) for k, is_frozen in frozen.items()
                     if is_frozen)
  under = lambda flat, path: sum(int(np.prod(x.shape)) for k, x in flat.items()
                                 if k[:len(path)] == path)
  width = max(len("  " * len(p) + (p[-1] if p else type(model).__name__)) for p in calls) + 2
  lines = [f"{'module':<{width}}{'type':<20}{'output (batch 1)':<24}{'params':>12}"
           f"{'statistics':>12}"]
  lines.append("-" * len(lines[0]))
  for path, (kind, output) in calls.items():
    name = "  " * len(path) + (path[-1] if path else type(model).__name__)
    lines.append(f"{name:<{width}}{kind:<20}{output:<24}{under(params, path):>12,}"
                 f"{under(stats, path):>12,}")
  total = _count(shapes["params"])
  height, width_px, channels = input_shape
  lines += [
      "",
      f"parameters: {total:,} ({total - frozen_count:,} trainable, {frozen_count:,} frozen); "
      f"BatchNorm statistics: {_count(shapes.get('batch_stats') or {}):,}",
      f"FLOPs per forward pass of one {height}x{width_px}x{channels} image: "
      + (f"{flops:,.0f} ({_format_count(flops)})" if flops else "not reported by this backend"),
  ]
  return "\n".join(lines)


def write(workdir: str, model: nn.Module, variables, input_shape: tuple[int, int, int],
          frozen_patterns=()) -> None:
  """Writes the summary to workdir/model_summary.txt (JAX process 0 only)."""
  if jax.process_index() == 0:
    with open(os.path.join(workdir, SUMMARY_FILE), "w") as f:
      f.write(summarize(model, variables, input_shape, frozen_patterns) + "\n")


def summarize_config(config: ml_collections.ConfigDict, num_classes: int,
                     num_channels: int) -> str:
  from segjax.models import factory
  from segjax.training import train_state
  from segjax.data import pipeline
  model = factory.create_model(config, num_classes)
  input_shape = (*pipeline.image_size(config.dataset), num_channels)
  state = train_state.abstract_train_state(config, model, input_shape)
  header = (f"model {config.model.name} ({', '.join(f'{k}={v}' for k, v in config.model.items())})"
            f", {num_classes} classes, {config.dtype}\n")
  return header + summarize(model, {"params": state.params, "batch_stats": state.batch_stats},
                            input_shape, train_state.frozen_patterns(config, model))
