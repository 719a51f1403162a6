"""python -m segjax.export --workdir RUN --output DIR [--step N|best] [--format stablehlo,onnx]
[--platforms cpu,cuda,tpu] [--output_kind classes|probabilities] [--mode whole|slide]
[--scales 0.75,1,1.25] [--flip]; see segjax/export/__init__.py."""

from __future__ import annotations

import os

from absl import app, flags, logging

from segjax import cli
from segjax.export import artifacts, function

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Workdir of a training run (its config and checkpoints).")
flags.DEFINE_string("output", None, "Folder to write stablehlo/ and onnx/ into (a new folder).")
cli.define_inference_flags()  # --step; --flip goes into the graph, --mode and --scales into
                              # model.json, where segjax.predict --export reads them.
flags.DEFINE_list("format", list(artifacts.FORMATS), "Formats to write: stablehlo, onnx.")
flags.DEFINE_list("platforms", ["cpu"], "Platforms of the StableHLO file: cpu, cuda, rocm, tpu.")
flags.DEFINE_enum("output_kind", "classes", function.OUTPUT_KINDS,
                  "What the model returns: class per pixel, or class probabilities.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  for name in ("workdir", "output"):
    if not getattr(FLAGS, name):
      raise app.UsageError(f"--{name} is required")
  if os.path.exists(FLAGS.output) and os.listdir(FLAGS.output):
    raise app.UsageError(f"--output {FLAGS.output} exists and is not empty; name a new folder")
  unknown = [f"--format {name}" for name in FLAGS.format if name not in artifacts.FORMATS] + [
      f"--platforms {name}" for name in FLAGS.platforms if name not in artifacts.PLATFORMS]
  if unknown or not FLAGS.format:
    raise cli.CommandError(f"{', '.join(unknown) or '--format is empty'}: formats are "
                           f"{', '.join(artifacts.FORMATS)}, platforms "
                           f"{', '.join(artifacts.PLATFORMS)}")
  step = cli.parse_step(FLAGS.step)
  inference = cli.inference_overrides()
  logging.set_verbosity(logging.WARNING)
  try:
    artifacts.export_run(FLAGS.workdir, FLAGS.output, step, FLAGS.format,
                         FLAGS.platforms, FLAGS.output_kind, inference=inference)
  except artifacts.ExportError as error:
    # A format the model cannot be written in (the message says which and why); the
    # other formats were written. Any other exception is a bug and keeps its traceback.
    raise cli.CommandError(str(error)) from error


if __name__ == "__main__":
  cli.run(main)
