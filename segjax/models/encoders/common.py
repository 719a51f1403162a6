"""Pieces the ImageNet encoders share: PyTorch-style convolution and BatchNorm, the
`output_stride` dilation rule, and the PyTorch state dict -> flax variables conversion.

Layouts: activations NHWC; flax kernels (kh, kw, in / groups, out) where PyTorch has
(out, in / groups, kh, kw); a flax `Dense` kernel is (in, out) where `nn.Linear` has
(out, in).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Padding = str | Sequence[tuple[int, int]]
OUTPUT_STRIDES = (8, 16, 32)


def stage_dilations(output_stride: int) -> dict[int, int]:
  """Dilation of the stages that normally reduce to stride 16 and 32.

  segmentation_models_pytorch's `make_dilated`: every stage whose stride would exceed
  `output_stride` runs at stride 1 with dilation stage_stride // output_stride.
  """
  if output_stride not in OUTPUT_STRIDES:
    raise ValueError(f"output_stride={output_stride}; an encoder takes 32 (no dilation), "
                     f"16 or 8")
  return {16: max(1, 16 // output_stride), 32: 32 // output_stride}


def dilated_padding(kernel: int, dilation: int) -> list[tuple[int, int]]:
  """`replace_strides_with_dilation`'s padding: (k // 2) * dilation on every side."""
  return [((kernel // 2) * dilation,) * 2] * 2


def static_same_padding(size: int, kernel: int, stride: int) -> list[tuple[int, int]]:
  """EfficientNet-PyTorch's `Conv2dStaticSamePadding` for an image side of `size`: the
  TensorFlow 'SAME' padding of that size (extra pixel after), kept for every input."""
  total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
  return [(total // 2, total - total // 2)] * 2


def conv(features: int, kernel: int, stride: int = 1, padding: Padding = "VALID",
         dilation: int = 1, groups: int = 1, use_bias: bool = False, dtype: Any = jnp.float32,
         name: str | None = None) -> nn.Conv:
  """`nn.Conv2d` in NHWC: explicit (or 'SAME') padding, dilation, groups."""
  if not isinstance(padding, str):
    padding = [tuple(p) for p in padding]
  return nn.Conv(features, (kernel, kernel), (stride, stride), padding=padding,
                 kernel_dilation=(dilation, dilation), feature_group_count=groups,
                 use_bias=use_bias, dtype=dtype, name=name)


def batch_norm(train: bool, frozen: bool, momentum: float, epsilon: float, dtype: Any,
               name: str) -> nn.BatchNorm:
  """`nn.BatchNorm2d(momentum=1 - momentum, eps=epsilon)`; with `frozen` it always uses
  (and never updates) the running statistics."""
  return nn.BatchNorm(use_running_average=not train or frozen, momentum=momentum,
                      epsilon=epsilon, dtype=dtype, name=name)


# ----------------------------------------------------------------------------------
# PyTorch state dict -> flax variables.

_LEAF_NAMES = {("params", "kernel"): "weight", ("params", "scale"): "weight",
               ("params", "bias"): "bias", ("batch_stats", "mean"): "running_mean",
               ("batch_stats", "var"): "running_var"}


def torch_name(collection: str, path: Sequence[str], module_prefix: str = "") -> str:
  """The state-dict name of a flax leaf: `blocks_3/depthwise_conv/kernel` ->
  `_blocks.3._depthwise_conv.weight` with module_prefix "_" (EfficientNet-PyTorch), and
  `layer1_0/downsample_0/kernel` -> `layer1.0.downsample.0.weight` with "" (torchvision)."""
  *modules, leaf = path
  parts = [module_prefix + re.sub(r"_(\d+)$", r".\1", m) for m in modules]
  return ".".join(parts + [_LEAF_NAMES[(collection, leaf)]])


def to_torch_layout(shape: Sequence[int]) -> tuple[int, ...]:
  """The PyTorch shape of a flax kernel of `shape` (biases and BatchNorm: the same)."""
  shape = tuple(shape)
  if len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  if len(shape) == 2:
    return (shape[1], shape[0])
  return shape


def from_torch(array: np.ndarray) -> np.ndarray:
  if array.ndim == 4:
    return array.transpose(2, 3, 1, 0)
  if array.ndim == 2:
    return array.T
  return array


def adapt_input_channels(weight: np.ndarray, channels: int) -> np.ndarray:
  """segmentation_models_pytorch's `patch_first_conv` for pretrained weights: one input
  channel gets the sum of the three kernels; others cycle through them, scaled 3 / n."""
  if channels == 1:
    return weight.sum(axis=1, keepdims=True)
  index = np.arange(channels) % weight.shape[1]
  return weight[:, index] * (weight.shape[1] / channels)


class ConversionError(ValueError):
  """A state dict that does not fit the encoder; `missing` is set when a name is absent."""

  def __init__(self, message: str, missing: str | None = None):
    super().__init__(message)
    self.missing = missing


def _network_order(first_conv: str):
  """Sort key for messages: the first convolution, then names in natural order (block 2
  before block 10)."""
  def key(name):
    parts = re.split(r"(\d+)", name)
    return name != first_conv, [int(p) if p.isdigit() else p for p in parts]
  return key


def convert_state_dict(state_dict: Mapping[str, np.ndarray], template: Mapping[str, Any],
                       module_prefix: str, ignored: Callable[[str], bool],
                       first_conv: str) -> dict:
  """{"params", "batch_stats"} of `template` (arrays or ShapeDtypeStructs) filled from
  `state_dict`.

  Every leaf must exist with its shape (PyTorch layout), except that `first_conv` may
  have another number of input channels (adapted as `adapt_input_channels`). Entries
  the encoder does not use are an error unless `ignored(name)` (a classifier, a head).

  Raises:
    ConversionError: the first missing name (with `.missing` set; the first convolution
      first, then in natural order), a shape that does not fit, or unused entries.
  """
  collections = [c for c in ("params", "batch_stats") if template.get(c)]
  leaves = {c: jax.tree_util.tree_flatten_with_path(dict(template[c])) for c in collections}
  expected = {}  # torch name -> (collection, index of the leaf, torch-layout shape)
  for c, (flat, _) in leaves.items():
    for i, (path, value) in enumerate(flat):
      name = torch_name(c, tuple(getattr(p, "key", p) for p in path), module_prefix)
      expected[name] = (c, i, to_torch_layout(value.shape))
  order = _network_order(first_conv)
  missing = sorted((n for n in expected if n not in state_dict), key=order)
  if missing:
    more = f"; {len(missing) - 1} more are missing" if len(missing) > 1 else ""
    raise ConversionError(f"no parameter {missing[0]!r} (expected shape "
                          f"{expected[missing[0]][2]}){more}", missing[0])
  converted = {c: [None] * len(flat) for c, (flat, _) in leaves.items()}
  for name in sorted(expected, key=order):
    c, i, shape = expected[name]
    array = np.asarray(state_dict[name])
    if name == first_conv and array.shape != shape and array.ndim == 4 and (
        array.shape[0], *array.shape[2:]) == (shape[0], *shape[2:]):
      array = adapt_input_channels(array, shape[1])
    if array.shape != shape:
      raise ConversionError(f"parameter {name!r} has shape {array.shape} in the checkpoint, "
                            f"the encoder expects {shape}")
    converted[c][i] = jnp.asarray(from_torch(array), leaves[c][0][i][1].dtype)
  unused = sorted((name for name in state_dict if name not in expected and not ignored(name)
                   and not name.endswith("num_batches_tracked")), key=order)
  if unused:
    shown = ", ".join(repr(n) for n in unused[:5]) + (", ..." if len(unused) > 5 else "")
    raise ConversionError(f"{len(unused)} entries the encoder does not have: {shown}")
  return {c: jax.tree_util.tree_unflatten(treedef, converted[c])
          for c, (_, treedef) in leaves.items()}
