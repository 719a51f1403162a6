"""MNIST and CIFAR-10 from their official files, as ArrayRecord, without TensorFlow.

MNIST: the four idx files `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
`t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz` (yann.lecun.com/exdb/mnist,
downloaded from the CVDF mirror TFDS uses). CIFAR-10: `cifar-10-python.tar.gz`
(www.cs.toronto.edu/~kriz/cifar.html): pickled batches data_batch_1..5 (train)
and test_batch (test) in cifar-10-batches-py/. From `dataset.source_dir` or
downloaded (segjax.data.official_files). Records: "image" uint8 (28, 28, 1) or
(32, 32, 3), "label" int64; splits train and test, in the files' order.
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from segjax.data import official_files
from segjax.data.images import DatasetError
from segjax.data.official_files import OfficialFile

_MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist"
MNIST_FILES = {  # split: (images, labels); sizes and SHA-256 as TFDS 4.9.10 checks them.
    "train": (OfficialFile("train-images-idx3-ubyte.gz", f"{_MNIST_URL}/train-images-idx3-ubyte.gz",
                           9912422,
                           "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
              OfficialFile("train-labels-idx1-ubyte.gz", f"{_MNIST_URL}/train-labels-idx1-ubyte.gz",
                           28881,
                           "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c")),
    "test": (OfficialFile("t10k-images-idx3-ubyte.gz", f"{_MNIST_URL}/t10k-images-idx3-ubyte.gz",
                          1648877,
                          "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
             OfficialFile("t10k-labels-idx1-ubyte.gz", f"{_MNIST_URL}/t10k-labels-idx1-ubyte.gz",
                          4542,
                          "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6")),
}
CIFAR10_FILE = OfficialFile(
    "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    170498071, "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")
CIFAR10_BATCHES = {"train": tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
                   "test": ("cifar-10-batches-py/test_batch",)}
_IDX_UBYTE = 0x08  # idx type code of unsigned bytes.


def parse_idx(data: bytes, where: str, ndim: int) -> np.ndarray:
  """An idx file's array (uint8): magic 0 0 0x08 ndim, ndim big-endian uint32 sizes, data."""
  if len(data) < 4 + 4 * ndim or data[:2] != b"\0\0" or data[2] != _IDX_UBYTE or data[3] != ndim:
    raise DatasetError(f"{where}: not an idx file of {ndim}-d unsigned bytes (header "
                       f"{data[:4].hex()}); the file is damaged or not the official one")
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  body = data[4 + 4 * ndim:]
  if len(body) != int(np.prod(shape)):
    raise DatasetError(f"{where}: the header gives shape {shape} ({int(np.prod(shape)):,} "
                       f"bytes) but {len(body):,} bytes follow; the file is truncated or damaged")
  return np.frombuffer(body, np.uint8).reshape(shape)


class MnistIdx(official_files.OfficialFilesBuilder):
  """MNIST handwritten digits from the official idx files."""

  VERSION = tfds.core.Version("1.0.0")
  FILES = tuple(file for pair in MNIST_FILES.values() for file in pair)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(28, 28, 1)),
            "label": tfds.features.ClassLabel(num_classes=10)}),
        homepage="https://yann.lecun.com/exdb/mnist/",
        disable_shuffling=True)  # Index i of a split is the files' i-th digit.

  def _split_generators(self, dl_manager):
    del dl_manager
    paths = self.paths()
    return {split: self._generate_examples(paths[images.name], paths[labels.name])
            for split, (images, labels) in MNIST_FILES.items()}

  def _generate_examples(self, images_path, labels_path):
    images = parse_idx(official_files.read_gzip(images_path), images_path, 3)
    labels = parse_idx(official_files.read_gzip(labels_path), labels_path, 1)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
      raise DatasetError(f"{images_path} holds images of shape {images.shape} and "
                         f"{labels_path} {len(labels)} labels: expected (N, 28, 28) and N")
    if labels.max(initial=0) > 9:
      raise DatasetError(f"{labels_path}: label {int(labels.max())} is not a digit")
    for index, (image, label) in enumerate(zip(images, labels)):
      # PIL images: TFDS would encode an array with TensorFlow.
      yield index, {"image": Image.fromarray(image, "L"), "label": int(label)}


class _ArraysOnly(pickle.Unpickler):
  """Unpickles CIFAR's batches (dicts of lists, bytes and NumPy arrays) and nothing
  that could run code: a damaged or hostile file cannot execute anything."""

  ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
             ("numpy", "ndarray"), ("numpy", "dtype"),
             ("_codecs", "encode")}  # How Python 3 writes bytes in protocol 2.

  def find_class(self, module, name):
    if (module, name) not in self.ALLOWED:
      raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
    if module.startswith("numpy.core"):  # Pickled by NumPy 1; NumPy 2 names it numpy._core.
      module = "numpy._core" + module[len("numpy.core"):]
    return super().find_class(module, name)


def parse_cifar_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 (N, 32, 32, 3), labels int64 (N,)) of one pickled CIFAR-10 batch."""
  try:
    batch = _ArraysOnly(io.BytesIO(data), encoding="bytes").load()
    pixels = np.asarray(batch[b"data"], np.uint8)
    labels = np.asarray(batch[b"labels"], np.int64)
  except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as error:
    raise DatasetError(f"{where}: not a CIFAR-10 batch ({type(error).__name__}: {error}); "
                       f"the archive is damaged or not the official one") from None
  if pixels.ndim != 2 or pixels.shape[1] != 3072 or len(pixels) != len(labels):
    raise DatasetError(f"{where}: data of shape {pixels.shape} and {len(labels)} labels, "
                       f"expected (N, 3072) and N")
  if labels.size and not 0 <= labels.min() <= labels.max() <= 9:
    raise DatasetError(f"{where}: labels outside 0-9")
  # Rows hold the red, green and blue planes of 32x32, row-major.
  return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


class Cifar10Python(official_files.OfficialFilesBuilder):
  """CIFAR-10 photos from the official Python version's pickled batches."""

  VERSION = tfds.core.Version("1.0.0")
  FILES = (CIFAR10_FILE,)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(32, 32, 3)),
            "label": tfds.features.ClassLabel(num_classes=10)}),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        disable_shuffling=True)  # The batches' order.

  def _split_generators(self, dl_manager):
    del dl_manager
    path = self.paths()[CIFAR10_FILE.name]
    return {split: self._generate_examples(path, members)
            for split, members in CIFAR10_BATCHES.items()}

  def _generate_examples(self, path, members):
    batches = dict(official_files.read_tar(path, members))
    for member in members:  # Official batch order.
      images, labels = parse_cifar_batch(batches[member], f"{path}:{member}")
      for index, (image, label) in enumerate(zip(images, labels)):
        yield f"{member.rsplit('/', 1)[-1]}_{index}", {"image": Image.fromarray(image, "RGB"),
                                                       "label": int(label)}
