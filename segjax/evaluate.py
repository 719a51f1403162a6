"""Evaluates a checkpoint of a training run on its evaluation split, or another split.

  python -m segjax.evaluate --workdir DIR [--step N|best] [--split test] [--flip] [--output FILE]

The run's config.json gives the dataset, model and evaluation batch size.
`--flip` evaluates with flip test-time augmentation (`config.eval_flip`: the
mean of the logits of each image and its mirror). `--step best`: the run's best
checkpoint (`config.best_metric`). Prints the metrics and a per-class table
(IoU, precision, recall, F1, named from labels.json); the last line is one
JSON object (step, split, flip, the metrics and the confusion matrix), also
written to `--output` when given (an existing file is not overwritten).
"""

from __future__ import annotations

import os

import jax
from absl import app, flags, logging

from segjax import checkpointing, class_report, cli, metrics as metrics_lib, outputs, train
from segjax import writers
from segjax import data as datasets
from segjax.data import pipeline

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags; defined when run as a command only, so that importing this
  module beside `segjax.predict` (which has --workdir and --step too) works."""
  flags.DEFINE_string("workdir", None, "Workdir of a training run (its config and checkpoints).")
  flags.DEFINE_string("step", None, "Checkpoint step to evaluate, or 'best' (default: the "
                      "latest).")
  flags.DEFINE_string("split", None, "Split to evaluate (default: the run's dataset.eval_split).")
  flags.DEFINE_bool("flip", False, "Average each image's logits with its mirror's.")
  flags.DEFINE_string("output", None, "Also write the JSON result to this new file.")


def evaluate(workdir: str, step: int | str | None = None, split: str | None = None,
             flip: bool = False) -> dict:
  """{"step", "split", "flip", the metrics of `Trainer.evaluate` (and "confusion"), and the
  per-class ones} of one checkpoint: `step` a number, "best", or None for the latest."""
  config, labels = outputs.read_run(workdir)
  config.eval_flip = flip
  config.cpu_conv_kernels = "default"  # The train step is not run: nothing to tune.
  if split:
    config.dataset.eval_split = split
  data = datasets.load(config.dataset)
  height, width = pipeline.image_size(config.dataset)
  trainer = train.Trainer(config, train.create_model(config, data.num_classes), data.num_classes,
                          (height, width, data.num_channels), data.ignore_index)
  manager, step = checkpointing.open_checkpoint(workdir, checkpointing.parse_step(step),
                                                config.max_to_keep)
  try:
    state = checkpointing.restore_checked(manager, step, trainer.state)
  finally:
    manager.close()
  batches = pipeline.EvalBatches(data.eval, (height, width), config.eval_batch_size,
                                 data.num_channels)
  metrics, _ = trainer.evaluate(state, batches)
  metrics.update(metrics_lib.per_class(metrics["confusion"], labels["class_names"]))
  return {"step": step, "split": config.dataset.eval_split, "flip": flip, **metrics}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required")
  if FLAGS.output and os.path.exists(FLAGS.output):
    raise app.UsageError(f"--output {FLAGS.output} exists; name a new file")
  logging.set_verbosity(logging.WARNING)
  result = evaluate(FLAGS.workdir, checkpointing.parse_step(FLAGS.step), FLAGS.split, FLAGS.flip)
  summary = ", ".join(f"{key} {value:.4f}" for key, value in result.items()
                      if isinstance(value, float) and "/" not in key)
  print(f"step {result['step']} of {FLAGS.workdir} on {result['split']}"
        f"{' with flips' if FLAGS.flip else ''}: {summary}")
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
