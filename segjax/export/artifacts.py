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
from jax import export as jax_export

from segjax import export as export_lib
from segjax.data import pipeline
from segjax.export import function, stablehlo
from segjax.inference import segmenter, visualize
from segjax.runtime import model_ops
from segjax.training import restored, writers

FORMATS = ("stablehlo", "onnx")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
# Each written file is read back and run on CHECK_IMAGES photo-like images and one of
# noise at each size it takes (the training size, and another where it takes others);
# a file whose classes agree with segjax's own prediction on fewer than CHECK_AGREEMENT
# of the pixels is an error naming its format.
CHECK_IMAGES = 4
CHECK_AGREEMENT = 0.999
# The platform whose op forms the ONNX graph holds (segjax.runtime.model_ops): the
# forms segjax runs on the CPU, where ONNX Runtime most often runs it too.
ONNX_TRACED_FOR = "cpu"


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
    platforms: what the StableHLO file runs on; the model is traced for each with
      that platform's op forms (segjax.runtime.model_ops), whatever this machine is.
    check: run each written file on `check_images` and compare with segjax's own
      jitted prediction on this machine (model.json: "check"); below CHECK_AGREEMENT
      the format's result is an error (a string), as for a format not written.
  """
  unknown = sorted(set(formats) - set(FORMATS)) + sorted(set(platforms) - set(PLATFORMS))
  if unknown:
    raise ValueError(f"unknown format or platform {', '.join(unknown)}: formats are "
                     f"{', '.join(FORMATS)}, platforms {', '.join(PLATFORMS)}")
  platforms = tuple(dict.fromkeys(platforms))

  def traced_for(platform: str):
    """The inference function, its models tracing `platform`'s op forms."""
    return function.inference_function(
        model_ops.traced_for(_model_ops_platform(platform), apply_fn), variables,
        description["normalization"], output_kind, description["flip"])

  size = tuple(description["training_size"])
  num_classes = len(description["classes"])
  reference = jax.jit(traced_for(_platform())) if check else None
  results = {}
  for fmt in formats:
    directory = os.path.join(output, export_lib.STABLEHLO_DIR if fmt == "stablehlo"
                             else export_lib.ONNX_DIR)
    os.makedirs(directory, exist_ok=True)
    try:
      record, run_file = (_write_stablehlo if fmt == "stablehlo" else _write_onnx)(
          traced_for, size, num_channels, directory, platforms)
    except Exception as error:  # Reported per format; the other formats are still written.
      results[fmt] = f"{type(error).__name__}: {error}"
      log(f"{description['model']['name']} cannot be exported to {fmt}: {results[fmt]}")
      continue
    record = {"format": fmt, **record, **description,
              "output": _output_description(output_kind, num_classes)}
    _write_json(os.path.join(directory, export_lib.METADATA_FILE), record)
    if check:
      record["check"] = _check(run_file, reference, output_kind, size,
                               record["input"]["size"], num_channels)
    _write_json(os.path.join(directory, export_lib.METADATA_FILE), record)
    path = os.path.join(directory, record["file"])
    if check and not record["check"]["passed"]:
      worst = min(record["check"]["sizes"], key=lambda checked: checked["class_agreement"])
      results[fmt] = (
          f"the written file {path} predicts other classes than segjax: they agree on "
          f"{worst['class_agreement']:.2%} of the pixels of {worst['images']} test images "
          f"at {worst['size'][0]}x{worst['size'][1]}, below the {CHECK_AGREEMENT:.1%} "
          f"required (model.json: check); do not use it")
      log(f"{description['model']['name']} cannot be exported to {fmt}: {results[fmt]}")
      continue
    results[fmt] = record
    log(f"wrote {path} (input {record['input']['size']}"
        f"{'; check ' + json.dumps(record['check']) if check else ''})")
  return results


def check_images(count: int, size: tuple[int, int], channels: int,
                 seed: int = 0) -> np.ndarray:
  """uint8 (count + 1, H, W, C): `count` photo-like images (smooth shading and texture,
  shapes with sharp edges and their own stripes, a little sensor noise), then one of
  uniform noise. The same arguments give the same images."""
  rng = np.random.default_rng(seed)
  height, width = size
  yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
  images = []
  for _ in range(count):
    image = np.empty((height, width, channels))
    for channel in range(channels):
      angle = rng.uniform(0, 2 * np.pi)
      plane = rng.uniform(60, 190) + rng.uniform(-60, 60) * (np.cos(angle) * yy +
                                                            np.sin(angle) * xx)
      for _ in range(3):  # Texture: a few cycles per image.
        fy, fx = rng.uniform(-6, 6, 2)
        plane += rng.uniform(4, 16) * np.sin(2 * np.pi * (fy * yy + fx * xx) +
                                             rng.uniform(0, 2 * np.pi))
      image[..., channel] = plane
    for _ in range(rng.integers(2, 6)):
      cy, cx = rng.uniform(0, yy.max()), rng.uniform(0, xx.max())
      ry, rx = rng.uniform(0.05, 0.35, 2)
      if rng.random() < 0.5:
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
      else:
        inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
      stripes = rng.uniform(0, 20) * np.sin(2 * np.pi * rng.uniform(3, 12) *
                                            (yy if rng.random() < 0.5 else xx))
      image[inside] = rng.uniform(0, 255, channels) + stripes[inside][:, None]
    image += rng.normal(0, 2, image.shape)
    images.append(image)
  images.append(rng.uniform(0, 256, (height, width, channels)))
  return np.clip(np.round(np.stack(images)), 0, 255).astype(np.uint8)


def _check(run_file, reference, output_kind: str, size: tuple[int, int], rule: dict,
           channels: int) -> dict:
  """The written file against segjax's prediction at the training size and, where the
  file takes other sizes, at one more (one stride taller, two wider)."""
  sizes = [tuple(size)]
  if "multiple_of" in rule:
    stride = rule["multiple_of"]
    sizes.append((size[0] + stride, size[1] + 2 * stride))
  checked = []
  for height, width in sizes:
    images = check_images(CHECK_IMAGES, (height, width), channels, seed=height * 4099 + width)
    checked.append({"size": [height, width],
                    **_compare(output_kind, run_file(images), np.asarray(reference(images)))})
  agreement = min(result["class_agreement"] for result in checked)
  return {"class_agreement": agreement, "required": CHECK_AGREEMENT,
          "passed": agreement >= CHECK_AGREEMENT, "sizes": checked,
          "inputs": f"{CHECK_IMAGES} photo-like images (shading, texture, edges) and one of "
                    "noise at each size"}


def _write_stablehlo(traced_for, size, channels, directory, platforms):
  """Writes the file; returns (its model.json fields, images -> its output here)."""
  forms = {platform: _op_forms(platform) for platform in platforms}
  if len({tuple(f.items()) for f in forms.values()}) == 1:
    fn = traced_for(platforms[0])
  else:  # One file, each platform's forms: the platform that runs it picks its branch.
    branches = {platform: traced_for(platform) for platform in platforms}
    fn = lambda images: jax.lax.platform_dependent(images, **branches)
  exported, rule = stablehlo.export(fn, size, channels, platforms)
  path = os.path.join(directory, export_lib.STABLEHLO_FILE)
  with open(path, "wb") as f:
    f.write(exported.serialize())
  record = {"file": export_lib.STABLEHLO_FILE, "platforms": list(exported.platforms),
            "model_ops": forms,
            "input": {"dtype": "uint8", "layout": "NHWC", "channels": channels, "batch": "any",
                      "size": rule}}
  if _platform() in platforms:
    return record, lambda images: export_lib.load(directory)(images)
  # The file cannot run here: its function, traced for its first platform, is lowered
  # for this machine instead and checked (the lowering for the target is not).
  local, _ = stablehlo.export(traced_for(platforms[0]), size, channels, (_platform(),))
  local = jax_export.deserialize(local.serialize())
  record["check_note"] = (f"run here as the function traced for {platforms[0]}, lowered for "
                          f"this machine's {_platform()}: the file itself runs on "
                          f"{', '.join(platforms)} only")
  return record, lambda images: np.asarray(jax.jit(local.call)(images))


def _write_onnx(traced_for, size, channels, directory, platforms):
  """Writes the file; returns (its model.json fields, images -> its output here)."""
  del platforms  # ONNX runtimes pick their own.
  from segjax.export import onnx_graph  # Needs the optional `onnx` package.
  model = onnx_graph.convert(traced_for(ONNX_TRACED_FOR), (*size, channels),
                             output_names=("output",))
  path = os.path.join(directory, export_lib.ONNX_FILE)
  with open(path, "wb") as f:
    f.write(model.SerializeToString())
  record = {"file": export_lib.ONNX_FILE, "opset": onnx_graph.OPSET,
            "input_name": "images", "output_name": "output",
            "model_ops": {ONNX_TRACED_FOR: _op_forms(ONNX_TRACED_FOR)},
            "input": {"dtype": "uint8", "layout": "NHWC", "channels": channels, "batch": "any",
                      "size": {"fixed": list(size),
                               "reason": "the ONNX graph has a symbolic batch only"}}}

  def run(images):
    import onnxruntime  # The optional extra's runtime.
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})[0]
  return record, run


def _platform() -> str:
  platform = jax.devices()[0].platform
  return "cuda" if platform == "gpu" else platform


def _model_ops_platform(platform: str) -> str:
  """An export platform (cuda, rocm, ...) as JAX's device platform, model_ops's name."""
  return "gpu" if platform in ("cuda", "rocm") else platform


def _op_forms(platform: str) -> dict[str, str]:
  """{op: form} a model traced for the export platform `platform` holds."""
  return {op: model_ops.formulation(op, _model_ops_platform(platform))
          for op in model_ops.FORMS}


def export_run(workdir: str, output: str, step: str | int | None = None,
               formats: Sequence[str] = FORMATS, platforms: Sequence[str] = ("cpu",),
               output_kind: str = "classes", log=print, inference: dict | None = None) -> dict:
  """Exports a run's checkpoint (default: the latest); see `write_exports`. `inference`
  overrides the run's `config.eval` ({"mode", "scales", "flip"}, as segjax.evaluate's
  flags do): flip averaging is traced into the graph, and all three go to model.json.

  Raises:
    ExportError: a format could not be written (the others were).
  """
  run = restored.restore(workdir, step)
  config = run.config
  if inference:
    config = config.copy_and_resolve_references()
    config.eval.update(inference)
    if "flip" in inference:
      config.eval_flip = False  # The older key would switch the flip on whatever eval.flip says.
  description = describe(run.labels, config, run.step, eval_metrics(workdir, run.step))
  results = write_exports(run.model.apply, run.variables, description, run.num_channels, output,
                          formats, platforms, output_kind, log=log)
  failed = {fmt: result for fmt, result in results.items() if isinstance(result, str)}
  if failed:
    raise ExportError("; ".join(f"{run.config.model.name} cannot be exported to {fmt}: {why}"
                                for fmt, why in failed.items()))
  return results
