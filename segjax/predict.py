"""Segments images with a trained run or an exported model, at each image's own size.

  python -m segjax.predict --workdir DIR --input PATH --output DIR [--step N|best]
      [--mode whole|slide] [--flip] [--scales 0.75,1,1.25] [--probabilities]
  python -m segjax.predict --export DIR --input PATH --output DIR [same options]

PATH is an image file or a folder of them. For every image, of any size, writes
`NAME_mask.png` (class index per pixel, at the image's original size),
`NAME_overlay.png` (class colours over the image) and, with --probabilities,
`NAME_prob_CLASS.png` per class (probability x 255, 8-bit gray). Inference is
the run's (config.eval, segjax.inference.segmenter): whole images padded to the model's
stride, or windows of the training crop size (`--mode slide`, for large
photos: memory grows with the window batch, not the photo), at the run's test
scale; --mode, --flip and --scales replace the run's options. Images are decoded
as training decodes a dataset's (segjax.data.images: transparency composited on
black). An unreadable image is reported by name and skipped; the exit status is
then 1.

--export runs the StableHLO file that `segjax.export` wrote in DIR instead of
a checkpoint (no Orbax, no model code), through the same inference with the
options its model.json records. The file's outputs take the place of logits:
probabilities are averaged over windows, scales and flips (mmsegmentation's
test-time augmentation averages them too), class indices are averaged as
one-hot votes. Whole images at scale 1 get the workdir's classes; where images
are resized, the export is fed the resized pixels rounded to uint8.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from segjax import cli
from segjax.data import images as image_files
from segjax.inference import segmenter as segmenter_lib, visualize
from segjax.scoring import losses
from segjax.training import restored

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Workdir of a training run (its config and checkpoints).")
flags.DEFINE_string("export", None, "Instead of --workdir: a folder written by segjax.export.")
flags.DEFINE_string("input", None, "An image file or a folder of images.")
flags.DEFINE_string("output", None, "Folder for NAME_mask.png and NAME_overlay.png.")
cli.define_inference_flags()
flags.DEFINE_bool("probabilities", False, "Also write NAME_prob_CLASS.png per class.")


_probabilities = jax.jit(losses.probabilities)


class Predictor:
  """A trained model restored from a workdir, with the run's inference options
  (`overrides`: `segmenter_lib.Options` fields, e.g. mode="slide"); `from_export`
  builds one from an exported StableHLO file instead."""

  def __init__(self, workdir: str, step: int | str | None = None, **overrides):
    """`step`: a number, "best", or None for the latest checkpoint."""
    run = restored.restore(workdir, step)
    self._set_up(f"the step {run.step} checkpoint of {workdir}", run.step, run.variables,
                 run.num_classes, run.num_channels, run.labels["class_names"],
                 restored.create_segmenter(run.config, run.model, run.num_channels, **overrides),
                 _probabilities)

  @classmethod
  def from_export(cls, directory: str, **overrides) -> "Predictor":
    """The StableHLO model `segjax.export` wrote in `directory` (see the module docs)."""
    from segjax import export
    model = export.load(directory)
    metadata = model.metadata
    names = [c["name"] for c in metadata["classes"]]
    segmenter = segmenter_lib.Segmenter(exported_apply(model), exported_options(metadata, overrides),
                                    log=logging.info)
    predictor = cls.__new__(cls)
    predictor._set_up(f"the step {metadata['step']} export in {directory}", metadata["step"], {},
                      len(names), metadata["input"]["channels"], names, segmenter,
                      lambda scores: scores)  # Already probabilities or votes.
    return predictor

  def _set_up(self, source: str, step, variables: dict, num_classes: int, num_channels: int,
              class_names, segmenter: segmenter_lib.Segmenter, to_probabilities) -> None:
    self.source, self.step, self.variables = source, step, variables
    self.num_classes, self.num_channels, self.class_names = num_classes, num_channels, class_names
    self.segmenter, self._probabilities = segmenter, to_probabilities

  def load_image(self, path: str) -> np.ndarray:
    """`read_image` with the run's channel count."""
    return read_image(path, self.num_channels)

  def predict_many(self, images: Iterable[tuple], probabilities: bool = False) -> Iterator[tuple]:
    """(key, uint8 (H, W) classes, float32 (H, W, K) probabilities or None) of each
    (key, uint8 (H, W, C) image), batched as `segjax.inference.segmenter.Segmenter` does."""
    for group in self.segmenter.segment(self.variables, images):
      classes = group.predictions()
      probs = segmenter_lib.to_host(self._probabilities(group.logits)) if probabilities else None
      for i, key in enumerate(group.keys):
        if key is not None:
          height, width = group.sizes[i]
          yield (key, classes[i, :height, :width].astype(np.uint8),
                 None if probs is None else probs[i, :height, :width])

  def predict(self, image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, C) of any size -> uint8 (H, W) class per pixel."""
    return next(self.predict_many([(0, image)]))[1]


def read_image(path: str, num_channels: int = 3) -> np.ndarray:
  """uint8 (H, W, num_channels) of an image file, decoded as training decodes the images
  of a dataset (segjax.data.images: an alpha channel composited on black), and made one
  channel as `dataset.grayscale` does; a DatasetError (a ValueError) naming the file."""
  image = image_files.to_rgb(image_files.open_image(path), path)
  if num_channels == 1:
    return np.asarray(image.convert("L"))[..., None]
  return np.asarray(image)


def exported_apply(model):
  """An `apply_fn` over an exported model: pixel values (0-255, float) -> its probabilities,
  or its class indices one-hot, float32 (N, H, W, max(K, 2))."""
  kind = model.metadata["output"]["kind"]
  channels = max(len(model.metadata["classes"]), 2)

  def apply_fn(variables, images, train=False):
    del variables, train
    output = model.exported.call(jnp.clip(jnp.round(images), 0, 255).astype(jnp.uint8))
    if kind == "classes":
      return jax.nn.one_hot(output, channels, dtype=jnp.float32)
    return output.astype(jnp.float32)
  return apply_fn


def exported_options(metadata: dict, overrides: dict) -> segmenter_lib.Options:
  """The inference options an export's model.json records (exports written before it
  recorded them: its size rule's), with `overrides`; the flip the export holds is not
  repeated unless asked for."""
  rule = metadata["input"]["size"]
  fields = {field.name for field in dataclasses.fields(segmenter_lib.Options)}
  recorded = {k: tuple(v) if isinstance(v, list) else v
              for k, v in metadata.get("inference", {}).items() if k in fields}
  options = {"resize": "keep_ratio", **recorded, "image_size": tuple(metadata["training_size"]),
             **overrides, "flip": overrides.get("flip", False),
             "normalization": segmenter_lib.PIXELS}
  if "fixed" in rule:  # The model takes one size: whole images are squashed to it.
    options["image_size"], options["total_stride"] = tuple(rule["fixed"]), 1
    if options.get("mode", "whole") == "whole":
      options["resize"] = "squash"
  else:
    options["total_stride"] = rule["multiple_of"]
  if metadata.get("normalization") == "per_image":
    logging.warning("the export normalises per image over its whole input, padding included; "
                    "padded images get slightly different statistics than with --workdir")
  return segmenter_lib.Options(**options)


def list_images(path: str) -> list[str]:
  if not os.path.exists(path):
    raise FileNotFoundError(f"--input {path}: no such file or folder")
  if os.path.isfile(path):
    return [path]
  return [os.path.join(path, name) for name in sorted(os.listdir(path))
          if name.lower().endswith(IMAGE_EXTENSIONS)]


def predict_paths(predictor: Predictor, paths: list[str], output: str,
                  probabilities: bool = False) -> list[str]:
  """Writes masks and overlays (and probabilities); returns the messages of images
  that failed."""
  os.makedirs(output, exist_ok=True)
  errors, images = [], {}

  def readable():
    for path in paths:
      try:
        images[path] = predictor.load_image(path)
      except ValueError as error:
        errors.append(str(error))
        print(f"error: {error}", file=sys.stderr)
        continue
      yield path, images[path]

  for path, mask, probs in predictor.predict_many(readable(), probabilities):
    image = images.pop(path)
    stem = os.path.join(output, os.path.splitext(os.path.basename(path))[0])
    visualize.save_png(mask, f"{stem}_mask.png")
    visualize.save_png(visualize.overlay(image, mask, predictor.num_classes),
                       f"{stem}_overlay.png")
    if probs is not None:
      names = predictor.class_names if probs.shape[-1] == len(predictor.class_names) else [
          f"class_{c}" for c in range(probs.shape[-1])]
      for c, name in enumerate(names):
        visualize.save_png(np.round(probs[..., c] * 255), f"{stem}_prob_{name}.png")
  return errors


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  for name in ("input", "output"):
    if not getattr(FLAGS, name):
      raise app.UsageError(f"--{name} is required")
  if bool(FLAGS.workdir) == bool(FLAGS.export):
    raise app.UsageError("give --workdir (a training run) or --export (segjax.export's output)")
  if FLAGS.export and FLAGS.step:
    raise app.UsageError("--step chooses a checkpoint of --workdir; an export holds one step")
  overrides = cli.inference_overrides()
  step = cli.parse_step(FLAGS.step)
  paths = list_images(FLAGS.input)
  predictor = (Predictor.from_export(FLAGS.export, **overrides) if FLAGS.export
               else Predictor(FLAGS.workdir, step, **overrides))
  errors = predict_paths(predictor, paths, FLAGS.output, FLAGS.probabilities)
  print(f"{len(paths) - len(errors)} of {len(paths)} images segmented with {predictor.source} "
        f"({segmenter_lib.cost_note(predictor.segmenter.options)}); outputs in {FLAGS.output}")
  if errors:
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main)
