"""Prints a model's summary: module tree with output shapes, parameter counts and FLOPs.

  python -m segjax.summary --config configs/segnet_skin.py[:ARG] [--config.KEY=VALUE ...]

What it counts: `segjax.training.model_summary`.
"""

from __future__ import annotations

from segjax.training.model_summary import summarize_config


def main(argv):
  from absl import app, flags, logging
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  config = flags.FLAGS.config
  from segjax.training import config_check
  config_check.check(config, devices=False)  # A summary needs no device of the run's mesh.
  num_classes, num_channels = flags.FLAGS.num_classes, flags.FLAGS.num_channels
  if num_classes is None or num_channels is None:
    from segjax import data as datasets
    data = datasets.load(config.dataset)
    num_classes = num_classes or data.num_classes
    num_channels = num_channels or data.num_channels
  print(summarize_config(config, num_classes, num_channels))


if __name__ == "__main__":
  from absl import flags
  from ml_collections import config_flags
  from segjax import cli
  config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
  flags.DEFINE_integer("num_classes", None, "Class count (default: the dataset's).")
  flags.DEFINE_integer("num_channels", None, "Input channels (default: the dataset's).")
  flags.mark_flags_as_required(["config"])
  cli.run(main)
