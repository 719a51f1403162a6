"""One registry for every model: `build(name, num_classes, **kwargs)`."""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
  """Class decorator: registers a `flax.linen.Module` under `name`."""
  def wrap(cls):
    if name in _MODELS:
      raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = cls
    return cls
  return wrap


def names() -> list[str]:
  return sorted(_MODELS)


def build(name: str, num_classes: int, **kwargs) -> nn.Module:
  """Returns the registered model `name` with `num_classes` outputs.

  Raises:
    ValueError: unknown model name, or an option the model does not have
      (config key `model.<option>`).
  """
  if name not in _MODELS:
    raise ValueError(f"unknown model {name!r} (config key model.name); "
                     f"registered models: {', '.join(names())}")
  cls = _MODELS[name]
  fields = {f.name for f in dataclasses.fields(cls) if f.init} - {"parent", "name"}
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ValueError(
        f"model {name!r} has no option {', '.join('model.' + k for k in unknown)}; "
        f"its options are: {', '.join(sorted(fields - {'num_classes'}))}")
  return cls(num_classes=num_classes, **kwargs)
