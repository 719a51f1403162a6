"""Trains and evaluates a segmentation model from a config file.

  python -m segjax.main --config configs/segnet_skin.py[:ARG] [--workdir DIR] [--config.KEY=VALUE ...]

ARG, when a config takes one, is passed to its get_config (e.g. the folder of a
real dataset). The workdir defaults to runs/<config file stem>[_<ARG's last
path part>]; running the same command again resumes from its latest
checkpoint. Errors in the config or the data end with one message and exit
status 2 (--verbose adds the traceback). Several processes (hosts): the same
command on each, with --coordinator_address/--num_processes/--process_id or
under SLURM / a TPU pod, which are detected.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from segjax import cli, data as datasets
from segjax.runtime import distributed, host_memory
from segjax.training import config_check, outputs, trainer

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, logs and pictures go "
                    "(default: runs/<config file stem>).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  host_memory.configure()  # Before JAX starts its threads.
  logging.set_verbosity(logging.WARNING)  # Library chatter; the run reports on stdout.
  distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  config_path = config_flags.get_config_filename(FLAGS["config"])
  workdir = FLAGS.workdir or outputs.default_workdir(config_path)
  # Every value is checked before the workdir is written: the config's alone, then
  # what needs the dataset (prepared once here; training opens it again).
  config_check.check(FLAGS.config)
  config_check.check_data(FLAGS.config, datasets.load(FLAGS.config.dataset))
  trainer.train_and_evaluate(FLAGS.config, workdir)


if __name__ == "__main__":
  cli.run(main)
