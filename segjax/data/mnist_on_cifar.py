"""`mnist_on_cifar`: an MNIST digit pasted on a CIFAR-10 photo, made on the fly.

Example i of a split: MNIST digit i over a CIFAR-10 image chosen at random,
resized (bilinear) to `dataset.image_size`; the 28x28 digit sits at an offset
drawn uniformly over the positions where it fits whole, in a random colour,
blended by its gray level. A digit pixel (gray > 127) is labelled.
Everything random comes from (`seed`, split, i): the same index always gives
the same example. The digits and photos come from the official files, without
TensorFlow (segjax.data.mnist_cifar10): `dataset.source_dir` holds
`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
`t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz` and
`cifar-10-python.tar.gz`, or, when it is empty, they are downloaded; both are
prepared once in `dataset.data_dir`. Splits: test, MNIST test on CIFAR-10
test; validation, 10% of the MNIST train digits on 10% of the CIFAR-10 train
photos, held out by `dataset.split_seed` (segjax.data.sources.held_out_indices),
and train, the other 90% of each (neither dataset has a validation split).
`dataset.target`:
  binary (default)  0 background, 1 digit
  digits            0 background, 1 + digit value (11 classes)
"""

from __future__ import annotations

import zlib

import ml_collections
import numpy as np
from PIL import Image

from segjax.data import mnist_cifar10, official_files, pipeline, sources, tfds_utils
from segjax.data.images import DatasetError
from segjax.data.registry import SegmentationData, register

SEED = 0
DIGIT_THRESHOLD = 127
TARGETS = {
    "binary": ("background", "digit"),
    "digits": ("background",) + tuple(f"digit_{d}" for d in range(10)),
}


class MnistOnCifarSource:
  """Records {"image": uint8 (H, W, 3), "mask": uint8 (H, W, 1)}, one per MNIST digit."""

  def __init__(self, digits, backgrounds, size: tuple[int, int], target: str, split_id: int):
    self.digits, self.backgrounds = digits, backgrounds
    self.size, self.target, self.split_id = size, target, split_id

  def __len__(self) -> int:
    return len(self.digits)

  def __repr__(self) -> str:  # Stable between runs: grain checks checkpoints against it.
    return (f"MnistOnCifarSource({self.digits!r}, {self.backgrounds!r}, size={self.size}, "
            f"target={self.target!r}, split_id={self.split_id})")

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    rng = np.random.default_rng([SEED, self.split_id, index])
    height, width = self.size
    background = np.asarray(self.backgrounds[int(rng.integers(len(self.backgrounds)))]["image"])
    canvas = Image.fromarray(background).resize((width, height), Image.BILINEAR)
    image = np.asarray(canvas, np.float32)
    example = self.digits[index]
    digit = np.asarray(example["image"]).reshape(28, 28)
    label = int(example["label"])
    if not 0 <= label <= 9:
      raise DatasetError(f"mnist example {index}: label {label} is not a digit 0-9")
    top = int(rng.integers(0, height - 28 + 1))
    left = int(rng.integers(0, width - 28 + 1))
    colour = rng.integers(0, 256, size=3).astype(np.float32)
    alpha = digit[..., None].astype(np.float32) / 255.0
    patch = image[top:top + 28, left:left + 28]
    image[top:top + 28, left:left + 28] = patch * (1 - alpha) + colour * alpha
    mask = np.zeros((height, width, 1), np.uint8)
    value = 1 if self.target == "binary" else 1 + label
    mask[top:top + 28, left:left + 28, 0] = np.where(digit > DIGIT_THRESHOLD, value, 0)
    return {"image": np.clip(np.round(image), 0, 255).astype(np.uint8), "mask": mask}


@register("mnist_on_cifar")
def load(dataset_config: ml_collections.ConfigDict) -> SegmentationData:
  target = sources.choose_target("mnist_on_cifar", dataset_config.target, TARGETS, "binary")
  names = TARGETS[target]
  size = pipeline.image_size(dataset_config)
  if min(size) < 28:
    raise DatasetError(f"mnist_on_cifar needs dataset.image_size >= 28 to fit a 28x28 digit, "
                       f"got {dataset_config.image_size}")
  data_dir = tfds_utils.data_dir(dataset_config.data_dir)
  digits, photos = (official_files.prepare(builder(source_dir=dataset_config.source_dir,
                                                   data_dir=data_dir))
                    for builder in (mnist_cifar10.MnistIdx, mnist_cifar10.Cifar10Python))

  def split(name):
    if name not in ("train", "validation"):
      return MnistOnCifarSource(tfds_utils.open_split(digits, name),
                                tfds_utils.open_split(photos, name), size, target,
                                split_id=zlib.crc32(name.encode()))
    # Neither has a validation split: one is held out of each train split, so that a
    # validation example shares neither its digit nor its photo with a training one.
    parts, sizes = [], {}
    for builder, what in ((digits, "MNIST digits"), (photos, "CIFAR-10 photos")):
      source = tfds_utils.open_split(builder, "train")
      kept, held = sources.held_out_indices(len(source), dataset_config.split_seed)
      parts.append(sources.SubsetSource(source, held if name == "validation" else kept, name))
      sizes[what] = (len(kept), len(held))
    sources.log_held_out("mnist_on_cifar", dataset_config.split_seed, sizes)
    return MnistOnCifarSource(*parts, size, target, split_id=zlib.crc32(name.encode()))

  return SegmentationData(
      train=split(dataset_config.train_split), eval=split(dataset_config.eval_split),
      num_classes=len(names), class_names=names, num_channels=3,
      ignore_index=dataset_config.ignore_index)
