"""ImageNet weights for the VGG16, MobileNetV2 and DenseNet encoders (Keras Applications).

The weights come from the Keras Applications "notop" HDF5 files: downloaded
once from their canonical address into a cache directory (default
`~/.cache/segjax/keras`) and checked against the checksum Keras publishes for
them (an MD5 digest: the `file_hash` Keras passes to `get_file`; Keras publishes
none for MobileNetV2), or read from an explicit path
(`config.model.pretrained_path`). Without network and without the file, the
error names the file and where to put it; nothing falls back to random weights.

Layers load by name: the encoders use the Keras layer names (`block1_conv1`,
`block_3_expand_BN`, `conv2_block1_1_conv`, ...). For a one-channel (grayscale)
input the first kernel is summed over its three input channels. The Keras VGG16
has no BatchNorm, so FCN8's BatchNorms keep their initial values.

The weights expect the input scaling they were trained with (Keras
`preprocess_input`): VGG16 'caffe' (BGR, ImageNet mean subtracted, 0..255),
MobileNetV2 'tf' ([-1, 1]), DenseNet 'torch' ([0, 1], ImageNet mean and std).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Mapping

import h5py
import jax.numpy as jnp
import numpy as np

from segjax.models import weight_files

KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
DEFAULT_CACHE_DIR = "~/.cache/segjax/keras"


@dataclasses.dataclass(frozen=True)
class KerasWeightsFile:
  filename: str
  folder: str
  md5: str | None  # As published in keras.applications; None where Keras publishes none.

  @property
  def url(self) -> str:
    return f"{KERAS_BASE_URL}{self.folder}/{self.filename}"


WEIGHT_FILES = {
    "vgg16": KerasWeightsFile("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16",
                              "6d6bbae143d832006294945121d1f1fc"),
    "mobilenetv2": KerasWeightsFile(
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5", "mobilenet_v2",
        None),
    "densenet121": KerasWeightsFile("densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                    "densenet", "30ee3e1110167f948a6b9946edeeb738"),
    "densenet169": KerasWeightsFile("densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                    "densenet", "b8c4d4c20dd625c148057b9ff1c1176b"),
    "densenet201": KerasWeightsFile("densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                    "densenet", "c13680b51ded0fb44dff2d8f86ac8bb1"),
}

# Older Keras releases, which wrote the DenseNet files, named the stem with a slash.
_KERAS_ALIASES = {"conv1_conv": "conv1/conv", "conv1_bn": "conv1/bn"}


def md5_of(path: str | os.PathLike) -> str:
  return weight_files.file_digest(path, "md5")


def _check_md5(path: pathlib.Path, spec: KerasWeightsFile) -> None:
  if spec.md5 is not None and (actual := md5_of(path)) != spec.md5:
    raise ValueError(
        f"{path} has MD5 {actual}, but Keras publishes {spec.md5} for {spec.filename}: the "
        f"file is damaged or a different one. Delete it and download it again from "
        f"{spec.url}.")


def _download(spec: KerasWeightsFile, target: pathlib.Path) -> None:
  weight_files.download(
      spec.url, target, spec.filename,
      f"put it at {target}, or set config.model.pretrained_path to the file",
      lambda partial: _check_md5(partial, spec))


def weights_file(encoder: str, path: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """The Keras weight file of `encoder`: `path` if given, else the cache, downloading it there.

  A file in the cache (or freshly downloaded) is checked against Keras' published MD5; an
  explicit `path` is taken as the user's choice and only checked layer by layer on loading.
  """
  spec = _spec(encoder)
  if path is not None:
    explicit = pathlib.Path(path).expanduser()
    if not explicit.is_file():
      raise FileNotFoundError(f"config.model.pretrained_path: {explicit} does not exist "
                              f"(expected the Keras file {spec.filename}, from {spec.url})")
    return explicit
  target = pathlib.Path(cache_dir or DEFAULT_CACHE_DIR).expanduser() / spec.filename
  if not target.is_file():
    _download(spec, target)
  else:
    _check_md5(target, spec)
  return target


def _spec(encoder: str) -> KerasWeightsFile:
  if encoder not in WEIGHT_FILES:
    raise ValueError(f"no ImageNet weights for encoder {encoder!r}; "
                     f"known: {', '.join(sorted(WEIGHT_FILES))}")
  return WEIGHT_FILES[encoder]


def read_keras_weights(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
  """Layer name -> weight arrays, in the file's order, of a Keras HDF5 weight file.

  Reads the `layer_names` attribute of the root (or of `model_weights` in a whole-model
  file) and each layer group's `weight_names`, as Keras' `load_weights` does.
  """
  with h5py.File(path, "r") as f:
    root = f["model_weights"] if "model_weights" in f else f
    if "layer_names" not in root.attrs:
      raise ValueError(f"{path} is not a Keras HDF5 weight file (no 'layer_names' attribute)")
    decode = lambda name: name.decode("utf8") if isinstance(name, bytes) else str(name)
    layers = {}
    for layer in map(decode, root.attrs["layer_names"]):
      group = root[layer]
      layers[layer] = [np.asarray(group[decode(w)]) for w in group.attrs["weight_names"]]
  return layers


def _kernel(keras: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
  """A Keras kernel in the layout of a flax kernel of `shape`."""
  if keras.ndim == 4 and keras.shape[3] == 1 and shape[2] == 1 and keras.shape[2] == shape[3]:
    keras = keras.transpose(0, 1, 3, 2)  # Depthwise: Keras (K, K, C, 1), flax (K, K, 1, C).
  elif keras.ndim == 4 and keras.shape[2] == 3 and shape[2] == 1:
    keras = keras.sum(axis=2, keepdims=True)  # Grayscale input: one channel stands for three.
  if keras.shape != tuple(shape):
    raise ValueError(f"{where}: the file's kernel has shape {keras.shape}, the model's "
                     f"{tuple(shape)}. ImageNet weights need width_multiplier 1.0 and 3 "
                     f"(or 1) input channels.")
  return keras


def _as(array: np.ndarray, leaf: Any, what: str) -> jnp.ndarray:
  if array.shape != tuple(leaf.shape):
    raise ValueError(f"{what} has shape {array.shape} in the file, {tuple(leaf.shape)} in the "
                     f"model")
  return jnp.asarray(array, leaf.dtype)


def _convert_batchnorm(arrays, params, stats, where):
  """Keras [gamma, beta, moving_mean, moving_variance] -> flax (params, batch_stats)."""
  if len(arrays) != 4:
    raise ValueError(f"{where}: expected 4 BatchNorm arrays (gamma, beta, moving_mean, "
                     f"moving_variance), found {len(arrays)}")
  gamma, beta, mean, var = arrays
  return ({"scale": _as(gamma, params["scale"], f"{where}: gamma"),
           "bias": _as(beta, params["bias"], f"{where}: beta")},
          {"mean": _as(mean, stats["mean"], f"{where}: moving_mean"),
           "var": _as(var, stats["var"], f"{where}: moving_variance")})


def _convert_conv(arrays, params, where):
  """Keras [kernel] or [kernel, bias] -> flax params."""
  names = ["kernel", "bias"][:len(params)]
  if len(arrays) != len(names):
    raise ValueError(f"{where}: expected {len(names)} arrays ({', '.join(names)}), "
                     f"found {len(arrays)}")
  converted = {"kernel": jnp.asarray(_kernel(arrays[0], params["kernel"].shape, where),
                                     params["kernel"].dtype)}
  if "bias" in params:
    converted["bias"] = _as(arrays[1], params["bias"], f"{where}: bias")
  return converted


def convert_encoder(params: Mapping[str, Any], batch_stats: Mapping[str, Any],
                    keras_layers: Mapping[str, list[np.ndarray]], source: str = "the file"
                    ) -> tuple[dict, dict]:
  """Fills an encoder's flax `params` / `batch_stats` from Keras layers of the same names.

  Every module of the encoder must be a layer of the file, except a BatchNorm
  `<conv>_bn` after a Keras convolution `<conv>` (FCN8's VGG16), which keeps its value.

  Returns:
    New (params, batch_stats) dicts: the input leaves (arrays or shapes) replaced by
    `jnp` arrays of the same shapes and dtypes.
  """
  params, batch_stats = dict(params), dict(batch_stats)
  for module, weights in params.items():
    keras_name = module if module in keras_layers else _KERAS_ALIASES.get(module)
    is_norm = "scale" in weights
    if keras_name not in keras_layers:
      if is_norm and module.endswith("_bn") and module[:-3] in keras_layers:
        continue
      raise ValueError(f"{source} has no layer {module!r}: is it the Keras file for this "
                       f"encoder?")
    where = f"layer {keras_name!r} of {source}"
    if is_norm:
      params[module], batch_stats[module] = _convert_batchnorm(
          keras_layers[keras_name], weights, batch_stats[module], where)
    elif "kernel" in weights and set(weights) <= {"kernel", "bias"}:
      params[module] = _convert_conv(keras_layers[keras_name], weights, where)
    else:
      raise ValueError(f"encoder module {module!r} ({sorted(weights)}) has no Keras "
                       f"counterpart")
  return params, batch_stats


def load_imagenet_encoder(variables: Mapping[str, Any], encoder: str,
                          path: str | os.PathLike | None = None,
                          cache_dir: str | os.PathLike | None = None) -> dict:
  """Returns `variables` with `params['encoder']` (and its batch statistics) from ImageNet.

  Args:
    variables: a model's variables, as `init` returns them.
    encoder: a key of `WEIGHT_FILES` (vgg16, mobilenetv2, densenet121/169/201).
    path: the Keras weight file (`config.model.pretrained_path`); None: the cache.
    cache_dir: where downloaded files live; None: ~/.cache/segjax/keras.
  """
  file = weights_file(encoder, path, cache_dir)
  params, stats = convert_encoder(variables["params"]["encoder"],
                                  variables.get("batch_stats", {}).get("encoder", {}),
                                  read_keras_weights(file), source=str(file))
  loaded = {**variables, "params": {**variables["params"], "encoder": params}}
  if stats:
    loaded["batch_stats"] = {**variables["batch_stats"], "encoder": stats}
  return loaded


def load_imagenet(model, variables: Mapping[str, Any], path: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None) -> dict:
  """`load_imagenet_encoder` for the encoder `model` names in its `imagenet_encoder`."""
  encoder = getattr(model, "imagenet_encoder", None)
  from segjax.models import encoders, torch_weights  # The PyTorch-checkpoint encoders.
  if encoder in encoders.names() and not encoders.is_keras(encoder):
    file = path or torch_weights.imagenet_weights_path(encoder, cache_dir)
    return torch_weights.load_encoder_weights(encoder, variables, file, scope=("encoder",))
  if encoder is None:
    raise ValueError(f"{type(model).__name__} with these options has no ImageNet encoder "
                     f"(config key model.pretrained); ImageNet weights exist for VGG16 "
                     f"(vgg16_skip_fcn, fcn8 with conv_type='conv'), MobileNetV2 "
                     f"(mobilenetv2_unet), DenseNet backbones (fc_densenet) and every `model.encoder` of "
                     f"unet, fpn and deeplabv3plus.")
  return load_imagenet_encoder(variables, encoder, path, cache_dir)
