"""lfw_parts on a small generated folder of the same layout (JPEG masks)."""

import os

import numpy as np
import pytest
from PIL import Image

from segjax import config as config_lib
from segjax import data as datasets
from segjax.data.images import DatasetError

SIZE = 32


def regions(index):
  """(face, face_hair) bool masks: a face block with hair above it, in 8x8 blocks."""
  yy, xx = np.mgrid[0:SIZE, 0:SIZE]
  left = 8 * (index % 3)
  face = (yy >= 16) & (yy < 32) & (xx >= left) & (xx < left + 16)
  hair = (yy >= 8) & (yy < 16) & (xx >= left) & (xx < left + 16)
  return face, face | hair


def write_lfw(root, count=20):
  for folder in ("inputs", "targets", "targets_face_only"):
    os.makedirs(os.path.join(root, folder), exist_ok=True)
  for index in range(count):
    name = f"Person_{index:04d}.jpg"
    image = np.full((SIZE, SIZE, 3), (index * 10) % 250, np.uint8)  # Tag, smooth for JPEG.
    Image.fromarray(image).save(os.path.join(root, "inputs", name), quality=95)
    face, face_hair = regions(index)
    for folder, mask in (("targets", face_hair), ("targets_face_only", face)):
      Image.fromarray(mask.astype(np.uint8) * 255).save(os.path.join(root, folder, name),
                                                        quality=70)


def lfw_config(tmp_path, **overrides):
  config = config_lib.base_config().dataset
  config.name = "lfw_parts"
  config.source_dir = str(tmp_path / "lfw")
  config.data_dir = str(tmp_path / "tfds")
  for key, value in overrides.items():
    config[key] = value
  return config


def tag(record):
  return int(round(float(record["image"][..., 0].mean()) / 10))


@pytest.mark.parametrize("target, names", [
    ("", ("background", "face")), ("face", ("background", "face")),
    ("face_hair", ("background", "face_hair")), ("parts", ("background", "face", "hair"))])
def test_targets(tmp_path, target, names):
  write_lfw(tmp_path / "lfw")
  data = datasets.load(lfw_config(tmp_path, target=target))
  assert data.class_names == names and data.num_classes == len(names)
  for source in (data.train, data.eval):
    for i in range(len(source)):
      record = source[i]
      assert record["image"].shape == (SIZE, SIZE, 3) and record["image"].dtype == np.uint8
      assert record["mask"].shape == (SIZE, SIZE, 1) and record["mask"].dtype == np.uint8
      face, face_hair = regions(tag(record))
      expected = {"face": face, "face_hair": face_hair,
                  "parts": face * 1 + (face_hair & ~face) * 2}[target or "face"]
      np.testing.assert_array_equal(record["mask"][..., 0], expected.astype(np.uint8))


def test_split_70_15_15_in_sorted_order(tmp_path):
  write_lfw(tmp_path / "lfw")
  config = lfw_config(tmp_path)
  data = datasets.load(config)
  config.eval_split = "test"
  test = datasets.load(config).eval
  assert [tag(data.train[i]) for i in range(len(data.train))] == list(range(14))
  assert [tag(data.eval[i]) for i in range(len(data.eval))] == [14, 15, 16]
  assert [tag(test[i]) for i in range(len(test))] == [17, 18, 19]  # The last 15%.


def test_grayscale(tmp_path):
  write_lfw(tmp_path / "lfw")
  data = datasets.load(lfw_config(tmp_path, grayscale=True))
  assert data.num_channels == 1 and data.train[0]["image"].shape == (SIZE, SIZE, 1)


@pytest.mark.parametrize("target", ["face", "parts"])
def test_sources_describe_themselves_the_same_in_every_load(tmp_path, target):
  """Grain compares repr(source) with the checkpointed one: no object addresses in it."""
  write_lfw(tmp_path / "lfw")
  config = lfw_config(tmp_path, grayscale=True, target=target)
  first, second = datasets.load(config), datasets.load(config)
  assert repr(first.train) == repr(second.train) != repr(first.eval)
  assert " at 0x" not in repr(first.train)
  assert repr(first.train) != repr(datasets.load(lfw_config(tmp_path, grayscale=True,
                                                            target="face_hair")).train)


def test_missing_mask_and_folder(tmp_path):
  write_lfw(tmp_path / "lfw")
  os.remove(tmp_path / "lfw" / "targets_face_only" / "Person_0003.jpg")
  with pytest.raises(DatasetError, match=r"inputs/Person_0003\.jpg: no mask named "
                     r"Person_0003\.\* in .*targets_face_only"):
    datasets.load(lfw_config(tmp_path))
  os.rename(tmp_path / "lfw" / "targets", tmp_path / "lfw" / "masks")
  with pytest.raises(DatasetError, match=r"lacks the folder\(s\) targets/"):
    datasets.load(lfw_config(tmp_path))
  assert not os.path.exists(tmp_path / "tfds" / "lfw_parts")
