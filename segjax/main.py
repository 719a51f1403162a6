"""Trains and evaluates a segmentation model from a config file.

  python -m segjax.main --config configs/segnet_skin.py [--workdir DIR] [--config.KEY=VALUE ...]

The workdir defaults to runs/<config file stem>; running the same command
again resumes from its latest checkpoint.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from segjax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, logs and pictures go "
                    "(default: runs/<config file stem>).")
flags.mark_flags_as_required(["config"])


def default_workdir(config_path: str) -> str:
  return os.path.join("runs", os.path.splitext(os.path.basename(config_path))[0])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)  # Library chatter; the run reports on stdout.
  workdir = FLAGS.workdir or default_workdir(config_flags.get_config_filename(FLAGS["config"]))
  train.train_and_evaluate(FLAGS.config, workdir)


if __name__ == "__main__":
  app.run(main)
