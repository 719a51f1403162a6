"""Segments images with a trained run.

  python -m segjax.predict --workdir DIR --input PATH --output DIR [--step N|best]

PATH is an image file or a folder of them. For every image, of any size, writes
`NAME_mask.png` (class index per pixel, at the image's original size) and
`NAME_overlay.png` (class colours over the image). Images are resized to the
training size for the network; class probabilities are resized back
bilinearly before the arg-max. An unreadable image is reported by name and
skipped; the exit status is then 1.
"""

from __future__ import annotations

import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from PIL import Image

from segjax import checkpointing, cli, outputs, sharding as sharding_lib, train, visualize
from segjax.data import normalize, pipeline

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Workdir of a training run (its config and checkpoints).")
flags.DEFINE_string("input", None, "An image file or a folder of images.")
flags.DEFINE_string("output", None, "Folder for NAME_mask.png and NAME_overlay.png.")
flags.DEFINE_string("step", None, "Checkpoint step to use, or 'best' (default: the latest).")


class Predictor:
  """A trained model restored from a workdir."""

  def __init__(self, workdir: str, step: int | str | None = None):
    """`step`: a number, "best", or None for the latest checkpoint."""
    self.config, self.labels = outputs.read_run(workdir)
    manager, step = checkpointing.open_checkpoint(workdir, checkpointing.parse_step(step),
                                                  self.config.max_to_keep)
    self.size = pipeline.image_size(self.config.dataset)
    self.num_classes = self.labels["num_classes"]
    self.num_channels = self.labels["num_channels"]
    model = train.create_model(self.config, self.num_classes)
    # One device is enough to segment single images.
    mesh = sharding_lib.create_mesh(devices=jax.local_devices()[:1])
    abstract = train.abstract_train_state(self.config, model, (*self.size, self.num_channels))
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding_lib.replicated(mesh)),
        abstract)
    try:
      self.state = checkpointing.restore_checked(manager, step, abstract)
    finally:
      manager.close()
    self.step = step
    self._probabilities = jax.jit(functools.partial(
        train.predict_probabilities, normalization=normalize.mode_for(self.config, model),
        flip=self.config.get("eval_flip", False)))  # Runs from before the option: no flip.

  def load_image(self, path: str) -> np.ndarray:
    """uint8 (H, W, C) with the run's channel count, or a ValueError naming the file."""
    try:
      with Image.open(path) as image:
        image.load()
        image = image.convert("L" if self.num_channels == 1 else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
      raise ValueError(f"{path}: cannot read image ({error})") from error
    array = np.asarray(image)
    return array[..., None] if array.ndim == 2 else array

  def predict(self, image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, C) of any size -> uint8 (H, W) class per pixel."""
    height, width = image.shape[:2]
    resized = pipeline.resize({"image": image, "mask": np.zeros((height, width, 1), np.uint8)},
                              self.size)["image"]
    probs = np.asarray(self._probabilities(self.state, jnp.asarray(resized[None])))[0]
    upsampled = np.stack([np.asarray(Image.fromarray(probs[..., c]).resize(
        (width, height), Image.BILINEAR)) for c in range(probs.shape[-1])], -1)
    return np.argmax(upsampled, -1).astype(np.uint8)


def list_images(path: str) -> list[str]:
  if not os.path.exists(path):
    raise FileNotFoundError(f"--input {path}: no such file or folder")
  if os.path.isfile(path):
    return [path]
  return [os.path.join(path, name) for name in sorted(os.listdir(path))
          if name.lower().endswith(IMAGE_EXTENSIONS)]


def predict_paths(predictor: Predictor, paths: list[str], output: str) -> list[str]:
  """Writes masks and overlays; returns the error messages of images that failed."""
  os.makedirs(output, exist_ok=True)
  errors = []
  for path in paths:
    try:
      image = predictor.load_image(path)
    except ValueError as error:
      errors.append(str(error))
      print(f"error: {error}", file=sys.stderr)
      continue
    mask = predictor.predict(image)
    stem = os.path.splitext(os.path.basename(path))[0]
    visualize.save_png(mask, os.path.join(output, f"{stem}_mask.png"))
    visualize.save_png(visualize.overlay(image, mask, predictor.num_classes),
                       os.path.join(output, f"{stem}_overlay.png"))
  return errors


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  for name in ("workdir", "input", "output"):
    if not getattr(FLAGS, name):
      raise app.UsageError(f"--{name} is required")
  paths = list_images(FLAGS.input)
  predictor = Predictor(FLAGS.workdir, FLAGS.step)
  errors = predict_paths(predictor, paths, FLAGS.output)
  print(f"{len(paths) - len(errors)} of {len(paths)} images segmented with the step "
        f"{predictor.step} checkpoint of {FLAGS.workdir}; outputs in {FLAGS.output}")
  if errors:
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main)
