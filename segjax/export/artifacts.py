"""Writes a run's checkpoint as StableHLO and ONNX files, each with its model.json.

`export_run` restores the checkpoint (`segjax.training.restored`); `write_exports` takes
any model's apply function and variables, so that tests and other callers
export without a workdir.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from typing import Sequence

import jax
import numpy as np

from segjax import export as export_lib
from segjax.data import pipeline
from segjax.export import function, stablehlo
from segjax.inference import segmenter, visualize
from segjax.training import restored, writers

FORMATS = ("stablehlo", "onnx")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
CHECK_IMAGES = 2  # Random images each artifact is run on and compared with segjax's prediction.


class ExportError(RuntimeError):
  """Some formats could not be written; the message says which and why."""


def eval_metrics(workdir: str, step: int) -> dict | None:
  """The last evaluation of `step` in the workdir's metrics.jsonl, or None."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return None
  found = None
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue  # A line cut off by a killed run.
      if record.get("split") == "eval" and record.get("step") == step:
        found = {k: v for k, v in record.items() if k not in ("step", "split")}
  return found


def segjax_version() -> str:
  try:
    return importlib.metadata.version("segjax")
  except importlib.metadata.PackageNotFoundError:
    return "unknown (not installed)"


def describe(labels: dict, config, step: int | None, metrics: dict | None) -> dict:
  """The model.json fields every format shares."""
  options = segmenter.Options.from_config(config, total_stride=1)
  names = list(labels["class_names"])
  colours = visualize.palette(len(names)).tolist()
  return {
      "segjax_version": segjax_version(),
      "model": {key: value for key, value in config.model.to_dict().items()},
      "step": step,
      "classes": [{"index": i, "name": name, "colour": colour}
                  for i, (name, colour) in enumerate(zip(names, colours))],
      "ignore_index": labels.get("ignore_index"),
      "normalization": options.normalization,
      "flip": options.flip,
      "training_size": list(pipeline.image_size(config.dataset)),
      # What `segjax.predict --export` segments with (segjax.inference.segmenter.Options).
      "inference": {"mode": options.mode, "scales": list(options.scales),
                    "resize": options.resize, "scale": list(options.scale),
                    "stride": list(options.stride), "batch_size": options.batch_size,
                    "window_batch_size": options.window_batch_size,
                    "max_shapes": options.max_shapes},
      "metrics": metrics,
      "metrics_source": (f"metrics.jsonl, eval at step {step}" if metrics else
                         f"none: metrics.jsonl has no evaluation at step {step}"),
  }


def _output_description(kind: str, num_classes: int) -> dict:
  if kind == "classes":
    return {"kind": kind, "dtype": "int32", "shape": ["N", "H", "W"],
            "meaning": "class index per pixel"}
  return {"kind": kind, "dtype": "float32", "shape": ["N", "H", "W", max(num_classes, 2)],
          "meaning": "class probabilities per pixel"}


def _compare(kind: str, produced: np.ndarray, expected: np.ndarray) -> dict:
  if kind == "classes":
    return {"images": len(produced), "class_agreement": float(np.mean(produced == expected))}
  return {"images": len(produced),
          "class_agreement": float(np.mean(produced.argmax(-1) == expected.argmax(-1))),
          "max_probability_difference": float(np.max(np.abs(produced - expected)))}


def _write_json(path: str, record: dict) -> None:
  with open(path, "w") as f:
    f.write(json.dumps(json.loads(writers.json_line(record)), indent=2) + "\n")


def write_exports(apply_fn, variables: dict, description: dict, num_channels: int, output: str,
                  formats: Sequence[str] = FORMATS, platforms: Sequence[str] = ("cpu",),
                  output_kind: str = "classes", check: bool = True, log=print) -> dict:
  """Writes OUTPUT/stablehlo and OUTPUT/onnx; returns {format: its model.json or the error}.

  Args:
    apply_fn, variables: the model's `apply` and its {"params", "batch_stats"}.
    description: `describe(...)`'s fields.
    check: run each written file on random images and compare with segjax's
      own jitted prediction (recorded in model.json under "check").
  """
  unknown = sorted(set(formats) - set(FORMATS)) + sorted(set(platforms) - set(PLATFORMS))
  if unknown:
    raise ValueError(f"unknown format or platform {', '.join(unknown)}: formats are "
                     f"{', '.join(FORMATS)}, platforms {', '.join(PLATFORMS)}")
  fn = function.inference_function(apply_fn, variables, description["normalization"],
                                   output_kind, description["flip"])
  size = tuple(description["training_size"])
  num_classes = len(description["classes"])
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (CHECK_IMAGES, *size, num_channels), dtype=np.uint8)
  expected = np.asarray(jax.jit(fn)(images)) if check else None
  results = {}
  for fmt in formats:
    directory = os.path.join(output, export_lib.STABLEHLO_DIR if fmt == "stablehlo"
                             else export_lib.ONNX_DIR)
    os.makedirs(directory, exist_ok=True)
    try:
      record = (_write_stablehlo if fmt == "stablehlo" else _write_onnx)(
          fn, size, num_channels, directory, platforms)
    except Exception as error:  # Reported per format; the other formats are still written.
      results[fmt] = f"{type(error).__name__}: {error}"
      log(f"{description['model']['name']} cannot be exported to {fmt}: {results[fmt]}")
      continue
    record = {"format": fmt, **record, **description,
              "output": _output_description(output_kind, num_classes)}
    _write_json(os.path.join(directory, export_lib.METADATA_FILE), record)
    if check and fmt == "stablehlo" and _platform() not in platforms:
      record["check"] = f"not run: not exported for this machine's {_platform()}"
    elif check:
      record["check"] = _compare(output_kind, _run(fmt, directory, images), expected)
    _write_json(os.path.join(directory, export_lib.METADATA_FILE), record)
    results[fmt] = record
    log(f"wrote {os.path.join(directory, record['file'])} (input {record['input']['size']}"
        f"{'; check ' + json.dumps(record['check']) if check else ''})")
  return results


def _write_stablehlo(fn, size, channels, directory, platforms) -> dict:
  exported, rule = stablehlo.export(fn, size, channels, platforms)
  with open(os.path.join(directory, export_lib.STABLEHLO_FILE), "wb") as f:
    f.write(exported.serialize())
  return {"file": export_lib.STABLEHLO_FILE, "platforms": list(exported.platforms),
          "input": {"dtype": "uint8", "layout": "NHWC", "channels": channels, "batch": "any",
                    "size": rule}}


def _write_onnx(fn, size, channels, directory, platforms) -> dict:
  del platforms  # ONNX runtimes pick their own.
  from segjax.export import onnx_graph  # Needs the optional `onnx` package.
  model = onnx_graph.convert(fn, (*size, channels), output_names=("output",))
  with open(os.path.join(directory, export_lib.ONNX_FILE), "wb") as f:
    f.write(model.SerializeToString())
  return {"file": export_lib.ONNX_FILE, "opset": onnx_graph.OPSET,
          "input_name": "images", "output_name": "output",
          "input": {"dtype": "uint8", "layout": "NHWC", "channels": channels, "batch": "any",
                    "size": {"fixed": list(size),
                             "reason": "the ONNX graph has a symbolic batch only"}}}


def _platform() -> str:
  platform = jax.devices()[0].platform
  return "cuda" if platform == "gpu" else platform


def _run(fmt: str, directory: str, images: np.ndarray) -> np.ndarray:
  """The written file's output on `images`: read back from disk, run without segjax's model."""
  if fmt == "stablehlo":
    return export_lib.load(directory)(images)
  import onnxruntime  # The optional extra's runtime.
  session = onnxruntime.InferenceSession(os.path.join(directory, export_lib.ONNX_FILE),
                                         providers=["CPUExecutionProvider"])
  return session.run(None, {"images": images})[0]


def export_run(workdir: str, output: str, step: str | int | None = None,
               formats: Sequence[str] = FORMATS, platforms: Sequence[str] = ("cpu",),
               output_kind: str = "classes", log=print) -> dict:
  """Exports a run's checkpoint (default: the latest); see `write_exports`.

  Raises:
    ExportError: a format could not be written (the others were).
  """
  run = restored.restore(workdir, step)
  description = describe(run.labels, run.config, run.step, eval_metrics(workdir, run.step))
  results = write_exports(run.model.apply, run.variables, description, run.num_channels, output,
                          formats, platforms, output_kind, log=log)
  failed = {fmt: result for fmt, result in results.items() if isinstance(result, str)}
  if failed:
    raise ExportError("; ".join(f"{run.config.model.name} cannot be exported to {fmt}: {why}"
                                for fmt, why in failed.items()))
  return results
