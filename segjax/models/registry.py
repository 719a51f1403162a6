"""One registry for every model: `build(name, num_classes, **kwargs)`."""

from __future__ import annotations

import dataclasses
from typing import Callable, Collection

import flax.linen as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}
# A second form of a registered name, built when the given option is set: "unet" with
# `encoder` is the encoder-decoder U-Net, without it the original U-Net.
_FORMS: dict[str, tuple[str, Callable[..., nn.Module]]] = {}


def register(name: str, when: str | None = None):
  """Class decorator: registers a `flax.linen.Module` under `name`; with `when`, as the
  form of `name` built when the option `when` is given a non-empty value."""
  def wrap(cls):
    table = _FORMS if when else _MODELS
    if name in table:
      raise ValueError(f"model {name!r} is registered twice")
    table[name] = (when, cls) if when else cls
    return cls
  return wrap


def names() -> list[str]:
  return sorted(set(_MODELS) | set(_FORMS))


def build(name: str, num_classes: int, *, defaults: Collection[str] = (),
          **kwargs) -> nn.Module:
  """Returns the registered model `name` with `num_classes` outputs.

  `defaults` names options of `kwargs` that hold the config's default value: a model
  without such an option ignores it (the base config's `model.width_multiplier` on
  a model with fixed widths), while any other option it lacks is an error.

  Raises:
    ValueError: unknown model name, or an option the model does not have
      (config key `model.<option>`).
  """
  if name not in _MODELS and name not in _FORMS:
    raise ValueError(f"unknown model {name!r} (config key model.name); "
                     f"registered models: {', '.join(names())}")
  option, form = _FORMS.get(name, (None, None))
  if form is not None and kwargs.get(option):
    cls = form
  else:
    kwargs = {k: v for k, v in kwargs.items() if k != option or v}  # An empty option: unset.
    cls = _MODELS[name]
  fields = {f.name for f in dataclasses.fields(cls) if f.init} - {"parent", "name"}
  kwargs = {k: v for k, v in kwargs.items() if k in fields or k not in defaults}
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ValueError(
        f"model {name!r} has no option {', '.join('model.' + k for k in unknown)}; "
        f"its options are: {', '.join(sorted(fields - {'num_classes'}))}")
  return cls(num_classes=num_classes, **kwargs)


_STRIDES: dict[str, int] = {}


def total_stride(model: nn.Module, num_channels: int = 3, largest: int = 256) -> int:
  """The smallest power of two s such that the model maps every (s*a, s*b) input to an
  output of the same height and width: inputs padded to multiples of it keep their size.

  Found from output shapes alone (`jax.eval_shape`, nothing computed) on (3s, 5s)
  inputs: below the true stride an odd multiple loses or gains pixels in the
  pooling and upsampling. Cached per model configuration; a model class may state
  it as a `total_stride` attribute instead.

  Raises:
    ValueError: no power of two up to `largest` keeps the size.
  """
  import jax
  import jax.numpy as jnp

  if getattr(model, "total_stride", None):
    return int(model.total_stride)
  key = repr(model)
  if key in _STRIDES:
    return _STRIDES[key]

  def keeps_size(stride: int) -> bool:
    shape = (1, 3 * stride, 5 * stride, num_channels)
    try:
      variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape),
                                                    train=False))
      out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros(shape), train=False), variables)
    except (ValueError, TypeError, IndexError, ZeroDivisionError):
      return False
    return tuple(out.shape[1:3]) == shape[1:3]

  stride = 1
  while not keeps_size(stride):
    stride *= 2
    if stride > largest:
      raise ValueError(f"model {type(model).__name__}: no input size multiple of a power of "
                       f"two up to {largest} gives an output of the input's size")
  _STRIDES[key] = stride
  return stride
