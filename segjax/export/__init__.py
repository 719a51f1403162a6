"""Trained models as files that run without segjax: StableHLO (`jax.export`) and ONNX.

  python -m segjax.export --workdir RUN --output DIR [--step N|best]
      [--format stablehlo,onnx] [--platforms cpu,cuda,tpu]
      [--output_kind classes|probabilities]

writes DIR/stablehlo/model.jax_export and DIR/onnx/model.onnx, each with a
model.json beside it (classes and colours, input size rule, normalisation,
step, segjax version, the checkpoint's evaluation metrics). Both take uint8
(N, H, W, C) images, any N, and apply the run's normalisation themselves.
The StableHLO file holds the model traced for each of `--platforms` with that
platform's op forms (segjax.runtime.model_ops; model.json: model_ops), on any
machine. Each file is read back and run on photo-like test images (and at a
size other than the training size where it takes one); one whose classes agree
with segjax's prediction on fewer than 99.9% of the pixels fails the export,
naming its format (segjax.export.artifacts).

`load(DIR)` runs the StableHLO file with jax alone: this module imports
neither the model code nor Orbax, so it needs only `jax` and `numpy`.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from jax import export as jax_export

from segjax.runtime import cpu_kernels

STABLEHLO_DIR, STABLEHLO_FILE = "stablehlo", "model.jax_export"
ONNX_DIR, ONNX_FILE = "onnx", "model.onnx"
METADATA_FILE = "model.json"


class ExportedModel:
  """A deserialised StableHLO export: `model(images)` -> numpy predictions.

  Attributes:
    metadata: the model.json beside the file (classes, input rule, ...).
    exported: the `jax.export.Exported` (its `.call` composes with jax.jit).
  """

  def __init__(self, exported: jax_export.Exported, metadata: dict):
    self.exported, self.metadata = exported, metadata
    # Compiled once per input shape, with segjax's forward-pass kernels on the CPU.
    self._call = jax.jit(exported.call,
                         compiler_options=cpu_kernels.inference_compiler_options())

  def check(self, images: np.ndarray) -> None:
    """Raises ValueError unless `images` is uint8 (N, H, W, C) that the model takes."""
    images = np.asarray(images) if not isinstance(images, jax.Array) else images
    rule = self.metadata["input"]
    channels = rule["channels"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != channels:
      raise ValueError(f"expected uint8 images (N, H, W, {channels}); got {images.dtype} "
                       f"{tuple(images.shape)}")
    height, width = images.shape[1:3]
    if "fixed" in rule["size"]:
      if [height, width] != rule["size"]["fixed"]:
        raise ValueError(f"this model takes {rule['size']['fixed'][0]}x"
                         f"{rule['size']['fixed'][1]} images; got {height}x{width} (resize first)")
    elif height % rule["size"]["multiple_of"] or width % rule["size"]["multiple_of"]:
      raise ValueError(f"height and width must be multiples of {rule['size']['multiple_of']}; "
                       f"got {height}x{width} (resize or pad first)")

  def __call__(self, images) -> np.ndarray:
    """uint8 (N, H, W, C) -> int32 (N, H, W) classes or float32 (N, H, W, K) probabilities."""
    self.check(images)
    return np.asarray(self._call(images))


def read_metadata(directory: str) -> dict:
  path = os.path.join(directory, METADATA_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: is {directory} a segjax export folder?")
  with open(path) as f:
    return json.load(f)


def load(directory: str) -> ExportedModel:
  """The StableHLO model in `directory` (an export's DIR or its DIR/stablehlo)."""
  if os.path.isdir(os.path.join(directory, STABLEHLO_DIR)):
    directory = os.path.join(directory, STABLEHLO_DIR)
  path = os.path.join(directory, STABLEHLO_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: export with --format stablehlo into "
                            f"{os.path.dirname(directory) or directory}")
  metadata = read_metadata(directory)
  with open(path, "rb") as f:
    exported = jax_export.deserialize(bytearray(f.read()))
  platform = jax.devices()[0].platform
  platform = "cuda" if platform == "gpu" else platform
  if platform not in exported.platforms:
    raise ValueError(f"{path} was exported for {', '.join(exported.platforms)}, not this "
                     f"machine's {platform}; export again with --platforms {platform}")
  return ExportedModel(exported, metadata)
