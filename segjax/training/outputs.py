"""Files a run leaves in its workdir besides checkpoints and metrics."""

from __future__ import annotations

import json
import os
import re

import jax
import ml_collections

from segjax import config as config_lib
from segjax.inference import evaluation, visualize
from segjax.training import writers

LABELS_FILE = "labels.json"  # What the classes are, for predict.py.


def default_workdir(config_flag_value: str) -> str:
  """runs/<config stem>, and _<last part of ARG> for `config.py:ARG`."""
  path, _, argument = config_flag_value.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  if argument:
    suffix = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(argument.rstrip("/\\")))
    name = f"{name}_{suffix or 'arg'}"
  return os.path.join("runs", name)


_RESUMED_CONFIG = re.compile(r"config_resumed_at_step_(\d+)\.json")


def read_run(workdir: str, step: int | None = None) -> tuple[ml_collections.ConfigDict, dict]:
  """The config that trained a run's checkpoint at `step` (None: the latest written
  config), and the labels.json of the run's workdir.

  A run resumed at step K with a changed config wrote it to
  config_resumed_at_step_K.json (`write_config`); it trained the steps after K,
  so step `step` was trained by the file of the largest K < `step`, or by
  config.json. The stored config is laid over `config.base_config()`, so a run
  written before a key existed gets that key's default.
  """
  config_path = os.path.join(workdir, "config.json")
  labels_path = os.path.join(workdir, LABELS_FILE)
  for path in (config_path, labels_path):
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path} not found: is {workdir} the workdir of a training run?")
  config_path = _config_file(workdir, step)
  config = config_lib.base_config()
  with open(config_path) as f:
    config.update(json.load(f))
  with open(labels_path) as f:
    return config, json.load(f)


def _config_file(workdir: str, step: int | None) -> str:
  """The config file that trained step `step` (None: the latest written): the
  config_resumed_at_step_K.json of the largest K < step, or config.json."""
  resumed = sorted((int(match.group(1)), name) for name in os.listdir(workdir)
                   for match in [_RESUMED_CONFIG.fullmatch(name)] if match)
  resumed = [name for start, name in resumed if step is None or start < step]
  return os.path.join(workdir, resumed[-1] if resumed else "config.json")


def write_config(config: ml_collections.ConfigDict, workdir: str, step: int) -> None:
  """Writes config.json; a run resumed with a config other than the latest written one
  keeps the old files and writes config_resumed_at_step_<step>.json."""
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, "config.json")
  text = config.to_json_best_effort(indent=2, sort_keys=True)
  if os.path.exists(path):
    latest = _config_file(workdir, None)
    with open(latest) as f:
      if f.read() == text:
        return
    path = os.path.join(workdir, f"config_resumed_at_step_{step}.json")
    writers.log(f"config differs from {latest}; this run's config: {path}")
  with open(path, "w") as f:
    f.write(text)


def write_labels(data, workdir: str) -> None:
  if jax.process_index() != 0:
    return
  with open(os.path.join(workdir, LABELS_FILE), "w") as f:
    json.dump({"num_classes": data.num_classes, "class_names": list(data.class_names),
               "num_channels": data.num_channels, "ignore_index": data.ignore_index}, f, indent=2)


def save_prediction_grid(segmenter, variables: dict, source, per_image: dict, workdir: str,
                         step: int, count: int, num_classes: int) -> None:
  """predictions/step_N.png: the first `count` images of the split and the `count` worst
  scored ones (segjax.inference.evaluation.pick_images), each at its own aspect ratio."""
  if count <= 0 or not per_image:
    return
  fixed, worst = evaluation.pick_images(per_image, count)
  records = {i: evaluation.standard_record(source[i]) for i in fixed + worst}
  # Every process segments (the computation spans the mesh); process 0 writes.
  predictions = evaluation.predict_masks(segmenter, variables,
                                         {i: r["image"] for i, r in records.items()})
  if jax.process_index() != 0:
    return
  name = "F1" if num_classes == 2 else "mIoU"
  titles = [f"example {i}, {name} {evaluation.image_score(per_image[i]):.3f}"
            f"{' (among the worst)' if i in worst else ''}" for i in fixed + worst]
  grid = visualize.prediction_grid(
      [(records[i]["image"], records[i]["mask"], predictions[i]) for i in fixed + worst],
      num_classes, titles)
  directory = os.path.join(workdir, "predictions")
  os.makedirs(directory, exist_ok=True)
  visualize.save_png(grid, os.path.join(directory, f"step_{step:07d}.png"))
