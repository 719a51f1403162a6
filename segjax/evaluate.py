"""Scores a checkpoint of a training run on its evaluation split, another split, or any
dataset, at the original resolution of the masks.

  python -m segjax.evaluate --workdir DIR [--step N|best] [--split test]
      [--mode whole|slide] [--flip] [--scales 0.75,1,1.25] [--output FILE]
      [--config.dataset.KEY=VALUE ...] [--config.eval.KEY=VALUE ...]

The run's config.json gives the dataset, model and inference options;
`--config.dataset.*` keys replace the run's (e.g. `--config.dataset.source_dir=PATH
--config.dataset.split_file=` scores an `image_folder` run on another folder of
images and masks, the split `--split` names), and `--config.eval.*` keys the
inference (mode whole|slide, scales, flip, stride; segjax.inference.segmenter). `--mode`,
`--scales` and `--flip` (as in segjax.predict) are `--config.eval.mode`, `.scales` and
`.flip`. The dataset must have the run's class count.
`--step best`: the run's best checkpoint (`config.best_metric`). Prints the
metrics and a per-class table (IoU, precision, recall, F1, named from
labels.json); the last line is one JSON object (step, split, flip, mode,
scales, the metrics and the confusion matrix), also written to `--output` when
given (an existing file is not overwritten).
"""

from __future__ import annotations

import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from segjax import cli, config as config_lib, data as datasets
from segjax.inference import class_report, evaluation
from segjax.scoring import losses, metrics as metrics_lib
from segjax.training import outputs, restored, writers
from segjax.training.config_check import ConfigError

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags; defined when run as a command only, so that importing this
  module beside `segjax.predict` (which has --workdir and --step too) works."""
  flags.DEFINE_string("workdir", None, "Workdir of a training run (its config and checkpoints).")
  cli.define_inference_flags()
  flags.DEFINE_string("split", None, "Split to evaluate (default: the run's dataset.eval_split).")
  flags.DEFINE_string("output", None, "Also write the JSON result to this new file.")
  config_flags.DEFINE_config_dict(
      "config", config_lib.base_config(),
      "Only --config.dataset.* and --config.eval.* overrides of the run's config.")


def apply_overrides(config, overrides: dict) -> None:
  """Sets flat {"dataset.name": value, ...} keys; only dataset.* and eval.* may change."""
  for key, value in overrides.items():
    group, _, name = key.partition(".")
    if group not in ("dataset", "eval") or not name:
      raise ConfigError(f"--config.{key}: only --config.dataset.* and --config.eval.* keys can "
                        "be changed when evaluating a trained run")
    config[group][name] = value


def evaluate(workdir: str, step: int | str | None = None, split: str | None = None,
             flip: bool = False, overrides: dict | None = None) -> dict:
  """{"step", "split", "flip", "mode", "scales", "num_images", the metrics of
  `evaluation.evaluate` ("confusion" among them) and the per-class ones} of one
  checkpoint: `step` a number, "best", or None for the latest."""
  run = restored.restore(workdir, step)
  config = run.config
  apply_overrides(config, overrides or {})
  if "eval.flip" in (overrides or {}):
    config.eval_flip = False  # The older key would switch the flip on whatever eval.flip says.
  if flip:
    config.eval.flip = True
  if split:
    config.dataset.eval_split = split
  # Only the evaluation split is read: a test folder needs no training split.
  config.dataset.train_split = config.dataset.eval_split
  data = datasets.load(config.dataset)
  if data.num_classes != run.num_classes:
    raise ConfigError(
        f"dataset {config.dataset.name!r} has {data.num_classes} classes, the run in {workdir} "
        f"predicts {run.num_classes} ({', '.join(run.labels['class_names'])}): set "
        f"--config.dataset.num_classes={run.num_classes} and a mask encoding that gives "
        "those classes")
  if data.num_channels != run.num_channels:
    raise ConfigError(f"dataset {config.dataset.name!r} has {data.num_channels}-channel images, "
                      f"the run in {workdir} takes {run.num_channels} (dataset.grayscale)")
  segmenter = restored.create_segmenter(config, run.model, run.num_channels)
  result = evaluation.evaluate(segmenter, run.variables, data.eval,
                               num_classes=run.num_classes, ignore_index=data.ignore_index,
                               objective=losses.from_config(config))
  metrics = result.metrics
  metrics.update(metrics_lib.per_class(metrics["confusion"], run.labels["class_names"]))
  options = segmenter.options
  return {"step": run.step, "split": config.dataset.eval_split, "flip": options.flip,
          "mode": options.mode, "scales": list(options.scales),
          "num_images": len(result.per_image), **metrics}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required")
  if FLAGS.output and os.path.exists(FLAGS.output):
    raise app.UsageError(f"--output {FLAGS.output} exists; name a new file")
  logging.set_verbosity(logging.WARNING)
  overrides = config_flags.get_override_values(FLAGS["config"])
  overrides.update({f"eval.{key}": value for key, value in cli.inference_overrides().items()})
  result = evaluate(FLAGS.workdir, cli.parse_step(FLAGS.step), FLAGS.split,
                    overrides=overrides)
  summary = ", ".join(f"{key} {value:.4f}" for key, value in result.items()
                      if isinstance(value, float) and "/" not in key)
  print(f"step {result['step']} of {FLAGS.workdir} on {result['split']} "
        f"({result['num_images']} images, {result['mode']} inference"
        f"{', flip' if result['flip'] else ''}): {summary}")
  _, labels = outputs.read_run(FLAGS.workdir)
  print(class_report.table(result["confusion"], labels["class_names"]))
  line = writers.json_line({**result, "confusion": result["confusion"].tolist()})
  if FLAGS.output and jax.process_index() == 0:
    with open(FLAGS.output, "x") as f:
      f.write(line + "\n")
  print(line)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
