"""Dataset options (oxford_iiit_pet, mnist_on_cifar; their builders on official-format
files are in test_official_datasets.py) and the synthetic shapes; records through the
training and evaluation pipelines."""

import numpy as np
import pytest

from segjax import config as config_lib, data as datasets
from segjax.data import mnist_on_cifar, oxford_pet, pipeline, synthetic_shapes
from segjax.data.images import DatasetError

import official_archives


def dataset_config(tmp_path, name, **overrides):
  config = config_lib.base_config().dataset
  config.name = name
  config.data_dir = str(tmp_path / "tfds")
  for key, value in overrides.items():
    config[key] = value
  return config


def check_records(data, num_classes, channels=3, size=None):
  """Documented shapes and dtypes; labels are classes or ignore_index."""
  for source in (data.train, data.eval):
    assert len(source) > 0
    for i in range(min(len(source), 6)):
      record = source[i]
      image, mask = record["image"], record["mask"]
      assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == channels
      assert mask.dtype == np.uint8 and mask.shape == image.shape[:2] + (1,)
      if size is not None:
        assert image.shape[:2] == size
      assert np.isin(mask, list(range(num_classes)) + [data.ignore_index]).all()
  assert data.num_classes == num_classes == len(data.class_names)


def test_oxford_trimap_table():
  trimap = oxford_pet.label_table("trimap", 255)
  binary = oxford_pet.label_table("binary", 255)
  assert trimap[[1, 2, 3, 0, 4, 200]].tolist() == [1, 0, 2, 255, 255, 255]
  assert binary[[1, 2, 3, 0, 4]].tolist() == [1, 0, 255, 255, 255]


def test_mnist_on_cifar_composition():
  """The digit's pixels > 127 are labelled, at an offset where the digit fits whole."""
  digit = np.zeros((28, 28, 1), np.uint8)
  digit[4:24, 10:18] = 250
  digits = [{"image": digit, "label": np.int64(7)}] * 50
  backgrounds = [{"image": np.full((32, 32, 3), 30, np.uint8)}]
  source = mnist_on_cifar.MnistOnCifarSource(digits, backgrounds, (64, 64), "digits", 0)
  offsets = set()
  for index in range(50):
    record = source[index]
    ys, xs = np.nonzero(record["mask"][..., 0])
    assert set(np.unique(record["mask"])) == {0, 8}  # 1 + digit 7.
    assert (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == (20, 8)
    top, left = ys.min() - 4, xs.min() - 10
    assert 0 <= top <= 64 - 28 and 0 <= left <= 64 - 28
    offsets.add((top, left))
    assert (record["image"][record["mask"][..., 0] == 0] == 30).all()
  assert len(offsets) > 40  # Offsets vary with the index.


def test_mnist_on_cifar_needs_room_for_a_digit(tmp_path):
  with pytest.raises(DatasetError, match="dataset.image_size >= 28"):
    datasets.load(dataset_config(tmp_path, "mnist_on_cifar", image_size=16))


def test_unknown_target_names_the_key(tmp_path):
  with pytest.raises(DatasetError, match="dataset.target='faces'.*trimap, binary"):
    datasets.load(dataset_config(tmp_path, "oxford_iiit_pet", target="faces"))


def test_synthetic_shapes(tmp_path, monkeypatch):
  monkeypatch.setattr(synthetic_shapes.SyntheticShapes, "SPLITS",
                      {"train": (0, 12), "validation": (1, 4)})
  data = datasets.load(dataset_config(tmp_path, "synthetic_shapes"))
  assert (len(data.train), len(data.eval)) == (12, 4)
  check_records(data, 4, size=(64, 64))
  image, mask = synthetic_shapes.generate_example(0, 0, 5)
  np.testing.assert_array_equal(data.train[5]["mask"][..., 0], mask)  # Stored in order.
  classes = set()
  for index in range(30):
    classes |= set(np.unique(synthetic_shapes.generate_example(0, 0, index)[1]).tolist())
  assert classes == {0, 1, 2, 3}


@pytest.mark.parametrize("augmentations", [
    ("flip", "scale_crop", "color_jitter"),
    ("affine", "rotate", "translate", "blur", "noise", "dropout", "grayscale", "hue")])
def test_pipeline_on_pets(tmp_path, augmentations):
  """Official-format pet files come out as fixed-size, valid batches."""
  official_archives.write_pets(str(tmp_path))
  config = config_lib.base_config()
  config.dataset = dataset_config(tmp_path, "oxford_iiit_pet", target="binary",
                                  image_size=24, augmentations=augmentations,
                                  source_dir=str(tmp_path))
  config.batch_size = 2
  data = datasets.load(config.dataset)
  loader = iter(pipeline.train_loader(data.train, config))
  for _ in range(2):
    batch = next(loader)
    assert batch["image"].shape == (2, 24, 24, 3) and batch["image"].dtype == np.uint8
    assert batch["mask"].shape == (2, 24, 24) and batch["mask"].dtype == np.uint8
    assert np.isin(batch["mask"], [0, 1, 255]).all()
  from segjax.inference import evaluation
  records = list(evaluation.read_records(data.eval))  # Evaluation reads them at full size.
  assert [index for index, _ in records] == list(range(len(data.eval)))
  assert all(r["mask"].shape == r["image"].shape[:2] for _, r in records)


def test_grayscale_applies_to_every_dataset(tmp_path):
  official_archives.write_mnist(str(tmp_path))
  official_archives.write_cifar10(str(tmp_path))
  data = datasets.load(dataset_config(tmp_path, "mnist_on_cifar", grayscale=True,
                                      source_dir=str(tmp_path)))
  assert data.num_channels == 1
  assert data.train[0]["image"].shape == (64, 64, 1)
