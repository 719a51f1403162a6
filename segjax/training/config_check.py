"""Checks a config before a run prepares data or writes anything.

`check(config)` raises one `ConfigError` that lists every wrong key with its
value and what to use instead. Names (model, dataset, optimizer, losses, ...)
are checked by the code that uses them, called here early; values that would
otherwise train silently (a negative learning rate) or fail deep inside JAX
(an image size the model cannot take, a batch the devices cannot split, a
frozen-parameter pattern matching nothing) are checked here, against the
model's abstract parameters (shapes only, nothing is computed).
`check_data(config, data)` checks what needs the dataset (its class count),
once it is loaded and before anything is written.
"""

from __future__ import annotations

import functools
import json
import os
import re

import jax
import jax.numpy as jnp
import ml_collections

from segjax import models
from segjax.data import augment, class_weights, normalize, pipeline, registry as data_registry
from segjax.data import sampling
from segjax.inference import segmenter
from segjax.runtime import cpu_kernels, sharding as sharding_lib
from segjax.scoring import losses, metrics
from segjax.training import optim


class ConfigError(ValueError):
  """A config key holds a value the run cannot use."""


DTYPES = ("float32", "bfloat16", "float16")


def _positive(config, keys, minimum, problems):
  for key in keys:
    value = config
    for part in key.split("."):
      value = value[part]
    if not value >= minimum:
      problems.append(f"{key}={value!r} must be >= {minimum}"
                      if minimum else f"{key}={value!r} must be > 0")


def _calls(problems, *checks) -> None:
  """Runs the checks of the modules that own each key; their ValueErrors are the problems."""
  for check in checks:
    try:
      check()
    except ValueError as error:
      problems.append(str(error))


def best_metric_problem(name: str) -> str | None:
  """None when `config.best_metric` names an evaluation metric ("" is off)."""
  if not name or name.removeprefix("-") in metrics.SCALAR_METRICS:
    return None
  return (f"best_metric={name!r} is not an evaluation metric; use one of "
          f"{', '.join(metrics.SCALAR_METRICS)} to keep its highest value, '-' before one to "
          "keep its lowest (e.g. '-loss'), or '' for no best checkpoint")


def check(config: ml_collections.ConfigDict, devices: bool = True) -> None:
  """Raises ConfigError naming every key of `config` that holds an unusable value.

  `devices`: also whether the mesh and the batch sizes suit this process's devices
  (what training needs; a model summary does not).
  """
  problems: list[str] = []
  _positive(config, ("learning_rate",), 0, problems)
  _positive(config, ("batch_size", "eval_batch_size", "num_train_steps", "log_every_steps",
                     "eval_every_steps", "checkpoint_every_steps", "max_to_keep",
                     "grad_accum_steps"), 1, problems)
  if config.warmup_steps < 0:
    problems.append(f"warmup_steps={config.warmup_steps} must be >= 0")
  if not 0 <= config.ema_decay < 1:
    problems.append(f"ema_decay={config.ema_decay} must be in [0, 1) (0: no moving average)")
  if config.dtype not in DTYPES:
    problems.append(f"dtype={config.dtype!r} is not one of {', '.join(DTYPES)}")
  if config.dataset.name not in data_registry.names():
    problems.append(f"unknown dataset {config.dataset.name!r} (config key dataset.name); "
                    f"registered datasets: {', '.join(data_registry.names())}")
  size_problem = _image_size_problem(config.dataset)
  if size_problem:
    problems.append(size_problem)
  best = best_metric_problem(config.get("best_metric", ""))
  if best:
    problems.append(best)
  if config.get("init_from") and not os.path.exists(config.init_from):
    problems.append(f"init_from={config.init_from!r}: no such workdir or checkpoint folder")
  step = str(config.get("init_from_step", ""))
  if step not in ("", "best") and not step.isdigit():
    problems.append(f"init_from_step={step!r}: use a step number, 'best', or '' for the latest")
  _calls(problems,
         lambda: optim.create_optimizer(config),
         # Loss names and weights; class_weights may name a method computed from the data.
         lambda: (class_weights.method_of(config.class_weights) or losses.from_config(config)),
         lambda: cpu_kernels.check(config.cpu_conv_kernels),
         lambda: normalize.normalize_images(jnp.zeros((1, 1, 1, 1), jnp.uint8),
                                            config.dataset.normalization or "unit"),
         lambda: [augment.get(name) for name in config.dataset.augmentations],
         lambda: sampling.check(config.dataset.sampler, config.dataset.repeat_threshold),
         # Evaluation's inference: eval.mode, eval.scales, dataset.resize, ...
         lambda: segmenter.Options.from_config(config, total_stride=1))
  if devices:
    problems.extend(_device_problems(config))
  trace = size_problem is None and config.dtype in DTYPES
  model_problem = _model_problem(config, trace)
  if model_problem:
    problems.append(model_problem)
  elif trace:
    problems.extend(_freeze_problems(config))
  if problems:
    raise ConfigError("the config cannot be used:\n  " + "\n  ".join(problems))


def check_data(config: ml_collections.ConfigDict, data) -> None:
  """Raises ConfigError for keys that do not suit the loaded dataset `data`
  (`segjax.data.SegmentationData`): per-class values of another class count."""
  weights = config.class_weights
  if (not class_weights.method_of(weights) and weights
      and len(weights) != data.num_classes):
    raise ConfigError(
        f"the config cannot be used:\n  class_weights={tuple(weights)!r} has {len(weights)} "
        f"entries but dataset {config.dataset.name!r} has {data.num_classes} classes "
        f"({', '.join(data.class_names)}): give one weight per class, or one of "
        f"{', '.join(class_weights.METHODS)}")


def _device_problems(config) -> list[str]:
  """The mesh over this process's view of the devices, and the batches split over it."""
  try:
    mesh = sharding_lib.create_mesh(config.mesh)
  except (TypeError, ValueError) as error:
    return [str(error)]
  problems: list[str] = []
  for key in ("batch_size", "eval_batch_size"):
    if config[key] >= 1:
      _calls(problems, lambda: sharding_lib.check_batch_size(config[key], mesh, key))
  accumulated = config.grad_accum_steps * mesh.size
  if (config.batch_size >= 1 and config.grad_accum_steps > 1
      and config.batch_size % mesh.size == 0 and config.batch_size % accumulated):
    problems.append(f"batch_size={config.batch_size} must divide by grad_accum_steps="
                    f"{config.grad_accum_steps} x {mesh.size} device(s): each micro-batch is "
                    f"split over the devices; use a multiple of {accumulated}")
  return problems


def _freeze_problems(config) -> list[str]:
  """optimizer.freeze patterns that are no regular expression or match no parameter."""
  patterns = tuple(config.optimizer.freeze)
  for pattern in patterns:
    try:
      re.compile(pattern)
    except (re.error, TypeError) as error:
      return [f"optimizer.freeze pattern {pattern!r} is not a regular expression ({error})"]
  if not patterns:
    return []
  height, width = pipeline.image_size(config.dataset)
  _, params = _trace(config, height, width)
  if params is None:  # The model did not trace: _model_problem says why.
    return []
  problems: list[str] = []
  _calls(problems, lambda: optim.check_patterns_match(params, patterns))
  return problems


def _image_size_problem(dataset_config) -> str | None:
  try:
    height, width = pipeline.image_size(dataset_config)
  except (TypeError, ValueError):
    return (f"dataset.image_size={dataset_config.image_size!r} must be a size in pixels or "
            "(height, width)")
  if height < 1 or width < 1:
    return f"dataset.image_size={dataset_config.image_size!r} must be positive"
  return None


_traced: dict = {}  # Traced once per model config and size in a process.


def _trace(config, height: int, width: int):
  """(the model's output (height, width) for one input, or the error tracing it raised;
  its abstract parameters, or None)."""
  from segjax.models import factory
  channels = 1 if config.dataset.get("grayscale", False) else 3
  key = (json.dumps({"model": config.model.to_dict(), "dtype": config.dtype}), height, width,
         channels)
  if key not in _traced:
    model = factory.create_model(config, 2)  # Parameter names do not depend on the classes.
    inputs = jax.ShapeDtypeStruct((1, height, width, channels), jnp.float32)
    try:
      out, variables = jax.eval_shape(functools.partial(model.init_with_output, train=False),
                                      jax.random.key(0), inputs)
      _traced[key] = tuple(out.shape[1:3]), variables.get("params", {})
    except Exception as error:  # Any shape error JAX or Flax raises while tracing.
      _traced[key] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}", None
  return _traced[key]


def _output_size(config, height: int, width: int):
  """The model's output (height, width) for one input, or the error tracing it raised."""
  return _trace(config, height, width)[0]


def _model_problem(config, trace: bool) -> str | None:
  """An unknown model or option; with `trace`, whether the model takes the configured
  image size and gives logits of that size."""
  from segjax.models import factory
  try:
    normalize.mode_for(config, factory.create_model(config, 2))
  except (ValueError, TypeError) as error:  # TypeError: a dtype JAX does not know.
    return None if config.dtype not in DTYPES else str(error)
  if not trace:
    return None
  height, width = pipeline.image_size(config.dataset)
  output = _output_size(config, height, width)
  if output == (height, width):
    return None
  try:
    stride = models.registry.total_stride(factory.create_model(config, 2),
                                 1 if config.dataset.get("grayscale", False) else 3)
  except ValueError:  # No power of two keeps the size.
    stride = None
  outcome = (f"gives {output[0]}x{output[1]} logits" if isinstance(output, tuple)
             else f"fails ({output})")
  hint = (f"use a multiple of its total stride {stride}, e.g. "
          f"{max(stride, round(height / stride) * stride)}" if stride else
          "use a size that is a multiple of a power of two, e.g. 64")
  return (f"dataset.image_size={config.dataset.image_size!r}: model {config.model.name!r} "
          f"on {height}x{width} images {outcome}; {hint}")
