"""The image_folder dataset on small generated folders: every mask encoding, both
layouts, image modes, and every kind of bad input."""

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from segjax import config as config_lib
from segjax import data as datasets
from segjax.data import image_folder, images
from segjax.data.images import DatasetError

HEIGHT, WIDTH = 16, 24
COLORS = ((0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255))


def class_map(index: int, num_classes: int) -> np.ndarray:
  """A mask of 8x8 blocks (sharp edges survive JPEG); example `index` has its own."""
  yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH] // 8
  return ((yy * 3 + xx + index) % num_classes).astype(np.uint8)


def tagged_image(index: int) -> np.ndarray:
  """RGB whose first pixel holds the example's index (to find it after splitting)."""
  image = np.random.default_rng(index).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
  image[0, 0] = index
  return image


def write_mask(path, classes, encoding):
  if encoding == "index":
    Image.fromarray(classes, "L").save(path)
  elif encoding == "binary":
    Image.fromarray(classes * 255, "L").save(path)
  elif encoding == "palette":
    mask = Image.fromarray(classes, "P")
    mask.putpalette([v for colour in COLORS for v in colour])
    mask.save(path)
  elif encoding == "color":
    Image.fromarray(np.array(COLORS, np.uint8)[classes], "RGB").save(path)
  elif encoding == "threshold":
    Image.fromarray(classes * 255, "L").save(path, quality=75)
  else:
    raise ValueError(encoding)


MASK_SUFFIX = {"index": ".png", "binary": ".png", "palette": ".png", "color": ".png",
               "threshold": ".jpg"}
NUM_CLASSES = {"index": 3, "binary": 2, "palette": 4, "color": 4, "threshold": 2}


def write_pairs(directory, indices, encoding="index", num_classes=3):
  for name in ("images", "masks"):
    os.makedirs(os.path.join(directory, name), exist_ok=True)
  for index in indices:
    Image.fromarray(tagged_image(index)).save(os.path.join(directory, "images", f"im{index:03d}.png"))
    write_mask(os.path.join(directory, "masks", f"im{index:03d}{MASK_SUFFIX[encoding]}"),
               class_map(index, num_classes), encoding)


def folder_config(tmp_path, source, **overrides):
  config = config_lib.base_config().dataset
  config.name = "image_folder"
  config.source_dir = str(source)
  config.data_dir = str(tmp_path / "tfds")
  for key, value in overrides.items():
    config[key] = value
  return config


def indices_of(source):
  return [int(source[i]["image"][0, 0, 0]) for i in range(len(source))]


def assert_nothing_written(tmp_path):
  root = tmp_path / "tfds"
  leftovers = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]
  leftovers += [d for d, dirs, files in os.walk(root) if not dirs and not files and d != str(root)]
  assert not leftovers, leftovers


@pytest.mark.parametrize("encoding", sorted(MASK_SUFFIX))
def test_every_mask_encoding(tmp_path, encoding):
  num_classes = NUM_CLASSES[encoding]
  write_pairs(tmp_path / "src", range(10), encoding, num_classes)
  config = folder_config(tmp_path, tmp_path / "src", mask_encoding=encoding,
                         num_classes=num_classes, class_colors=COLORS[:num_classes])
  data = datasets.load(config)
  assert (len(data.train), len(data.eval)) == (8, 1)
  assert data.num_classes == num_classes and data.num_channels == 3
  assert data.class_names == tuple(f"class_{i}" for i in range(num_classes))
  for source in (data.train, data.eval):
    for i in range(len(source)):
      record = source[i]
      assert record["image"].shape == (HEIGHT, WIDTH, 3) and record["image"].dtype == np.uint8
      assert record["mask"].shape == (HEIGHT, WIDTH, 1) and record["mask"].dtype == np.uint8
      index = int(record["image"][0, 0, 0])
      np.testing.assert_array_equal(record["image"], tagged_image(index))
      np.testing.assert_array_equal(record["mask"][..., 0], class_map(index, num_classes))


def test_ratio_split_is_reproducible_disjoint_and_complete(tmp_path):
  write_pairs(tmp_path / "src", range(20))
  config = folder_config(tmp_path, tmp_path / "src", num_classes=3, split_ratios=(0.5, 0.3, 0.2))
  data = datasets.load(config)
  train, validation = indices_of(data.train), indices_of(data.eval)
  config.eval_split = "test"
  test = indices_of(datasets.load(config).eval)
  assert (len(train), len(validation), len(test)) == (10, 6, 4)
  assert sorted(train + validation + test) == list(range(20))
  expected = images.split_by_ratios([f"im{i:03d}" for i in range(20)], (0.5, 0.3, 0.2),
                                    ("train", "validation", "test"), seed=0)
  assert [f"im{i:03d}" for i in train] == expected["train"]
  # Another seed, another split (and another prepared copy).
  config.split_seed = 1
  assert indices_of(datasets.load(config).eval) != test


def test_split_folders(tmp_path):
  for split, indices in (("train", range(0, 5)), ("val", range(5, 8)), ("test", range(8, 10))):
    write_pairs(tmp_path / "src" / split, indices)
  config = folder_config(tmp_path, tmp_path / "src", num_classes=3,
                         class_names=("sky", "grass", "road"))
  data = datasets.load(config)
  assert sorted(indices_of(data.train)) == list(range(5))
  assert indices_of(data.eval) == [5, 6, 7]  # Sorted file order.
  assert data.class_names == ("sky", "grass", "road")
  config.eval_split = "test"
  assert indices_of(datasets.load(config).eval) == [8, 9]


def write_split_file(path, rows, header=("name", "subset", "orig_split")):
  path.write_text("\n".join([",".join(header)] + [",".join(row) for row in rows]) + "\n")


def test_split_file_lists_each_split(tmp_path):
  write_pairs(tmp_path / "src", range(8))
  splits = ["train", "val", "train", "test", "train", "val", "train"]  # im007 unlisted.
  write_split_file(tmp_path / "manifest.csv",
                   [(f"im{i:03d}", "sfa", split) for i, split in enumerate(splits)])
  config = folder_config(tmp_path, tmp_path / "src", num_classes=3,
                         split_file=str(tmp_path / "manifest.csv"), split_column="orig_split")
  data = datasets.load(config)
  assert indices_of(data.train) == [0, 2, 4, 6]  # In the file's order.
  assert indices_of(data.eval) == [1, 5]
  config.eval_split = "test"
  assert indices_of(datasets.load(config).eval) == [3]
  # Another split file is another prepared copy, not the stale one.
  write_split_file(tmp_path / "manifest.csv",
                   [(f"im{i:03d}", "sfa", "val" if i < 2 else "train") for i in range(8)])
  config.eval_split = "validation"
  assert indices_of(datasets.load(config).eval) == [0, 1]


@pytest.mark.parametrize("rows, column, match", [
    ([("im000", "x", "train"), ("im001", "x", "holdout")], "orig_split",
     r"manifest\.csv:3: orig_split='holdout', expected one of train, val"),
    ([("im000", "x", "train"), ("im099", "x", "val")], "orig_split",
     r"manifest\.csv:3: 'im099' has no image and mask"),
    ([("im000", "x", "train"), ("im000", "x", "val")], "orig_split",
     r"manifest\.csv:3: 'im000' is listed twice"),
    ([("im000", "x", "train")], "split",
     r"manifest\.csv: no column split \(columns: name, subset, orig_split\); set "
     r"dataset\.split_column"),
])
def test_bad_split_file(tmp_path, rows, column, match):
  write_pairs(tmp_path / "src", range(4))
  write_split_file(tmp_path / "manifest.csv", rows)
  load_fails(tmp_path, match, split_file=str(tmp_path / "manifest.csv"), split_column=column)


def test_missing_split_file(tmp_path):
  write_pairs(tmp_path / "src", range(4))
  load_fails(tmp_path, r"dataset\.split_file=.*nowhere\.csv: cannot read it",
             split_file=str(tmp_path / "nowhere.csv"))


def test_options_and_folders_do_not_collide(tmp_path):
  write_pairs(tmp_path / "a", range(10), "binary", 2)
  write_pairs(tmp_path / "b", range(10), "binary", 2)
  binary = folder_config(tmp_path, tmp_path / "a", mask_encoding="binary")
  builders = [
      image_folder.ImageFolderSegmentation(
          source_dir=config.source_dir, mask_options=images.MaskOptions.from_config(config),
          split_ratios=config.split_ratios, split_seed=config.split_seed,
          data_dir=config.data_dir)
      for config in (binary, folder_config(tmp_path, tmp_path / "a", mask_encoding="threshold"),
                     folder_config(tmp_path, tmp_path / "b", mask_encoding="binary"))]
  assert len({builder.data_dir for builder in builders}) == 3
  assert all(builder.data_dir.startswith(str(tmp_path / "tfds")) for builder in builders)
  datasets.load(binary)
  # Changing a file prepares the folder again rather than reading stale data.
  write_pairs(tmp_path / "a", [0], "index", num_classes=2)
  os.utime(tmp_path / "a" / "masks" / "im000.png", ns=(1, 1))
  rebuilt = image_folder.ImageFolderSegmentation(
      source_dir=binary.source_dir, mask_options=images.MaskOptions.from_config(binary),
      data_dir=binary.data_dir)
  assert rebuilt.data_dir != builders[0].data_dir and not rebuilt.is_prepared()


def test_image_modes(tmp_path):
  """Gray replicated, RGBA composited on black, palette expanded, CMYK converted."""
  src = tmp_path / "src" / "train"  # Split folders keep the sorted file order.
  write_pairs(src, range(4))
  write_pairs(src.parent / "val", range(4, 5))  # A validation split: train keeps all four.
  rgb = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
  gray = rgb[..., 0]
  alpha = np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 1), dtype=np.uint8)
  for index in range(4):
    os.remove(src / "images" / f"im{index:03d}.png")
  Image.fromarray(gray, "L").save(src / "images" / "im000.png")
  Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA").save(src / "images" / "im001.png")
  Image.fromarray(rgb).convert("P").save(src / "images" / "im002.bmp")
  Image.fromarray(rgb).convert("CMYK").save(src / "images" / "im003.tif")
  config = folder_config(tmp_path, src.parent, num_classes=3, eval_split="train")
  data = datasets.load(config)
  records = [data.train[i]["image"].astype(int) for i in range(4)]
  np.testing.assert_array_equal(records[0], np.repeat(gray[..., None], 3, -1))
  np.testing.assert_array_equal(records[1], (rgb.astype(int) * alpha + 127) // 255)
  np.testing.assert_array_equal(records[2], np.asarray(Image.fromarray(rgb).convert("P").convert("RGB")))
  np.testing.assert_array_equal(records[3], np.asarray(Image.fromarray(rgb).convert("CMYK").convert("RGB")))


def test_grayscale_option_gives_one_channel(tmp_path):
  write_pairs(tmp_path / "src", range(10))
  data = datasets.load(folder_config(tmp_path, tmp_path / "src", num_classes=3, grayscale=True))
  assert data.num_channels == 1
  record = data.train[0]
  index = int(record["image"][0, 0, 0])  # Luma of a gray pixel is the pixel.
  expected = np.asarray(Image.fromarray(tagged_image(index)).convert("L"))
  np.testing.assert_array_equal(record["image"][..., 0], expected)
  assert record["image"].shape == (HEIGHT, WIDTH, 1)


# Bad input: each names the file and what is wrong, when the dataset is prepared,
# and leaves nothing in the data dir.

def load_fails(tmp_path, match, **overrides):
  config = folder_config(tmp_path, tmp_path / "src", **{"num_classes": 3, **overrides})
  with pytest.raises(DatasetError, match=match):
    datasets.load(config)
  assert_nothing_written(tmp_path)
  return config


def test_corrupt_image_then_fixed(tmp_path):
  write_pairs(tmp_path / "src", range(10))
  path = tmp_path / "src" / "images" / "im004.png"
  good = path.read_bytes()
  path.write_bytes(b"not an image at all")
  config = load_fails(tmp_path, r"im004\.png: cannot decode the image, the file is corrupt")
  path.write_bytes(good)  # Fixed: the same command now works.
  assert len(datasets.load(config).train) == 8


def test_truncated_image(tmp_path):
  write_pairs(tmp_path / "src", range(10))
  path = tmp_path / "src" / "images" / "im002.jpg"
  Image.fromarray(tagged_image(2)).save(path, quality=95)
  os.remove(tmp_path / "src" / "images" / "im002.png")
  path.write_bytes(path.read_bytes()[:-200])
  load_fails(tmp_path, r"im002\.jpg: cannot decode the image, the file is corrupt or truncated")


def test_size_mismatch(tmp_path):
  write_pairs(tmp_path / "src", range(10))
  Image.fromarray(np.zeros((HEIGHT, WIDTH + 1), np.uint8)).save(
      tmp_path / "src" / "masks" / "im003.png")
  load_fails(tmp_path, r"im003\.png is 24x16 .* but its mask .*im003\.png is 25x16")


def test_mask_value_out_of_range(tmp_path):
  write_pairs(tmp_path / "src", range(10))
  mask = class_map(5, 3)
  mask[0, 0], mask[1, 1] = 7, 255  # 255 is ignore_index: allowed.
  Image.fromarray(mask).save(tmp_path / "src" / "masks" / "im005.png")
  load_fails(tmp_path, r"im005\.png: mask values \[7\] at 1 pixel\(s\) are neither a class")


def test_image_without_mask_and_mask_without_image(tmp_path):
  write_pairs(tmp_path / "src", range(10))
  os.remove(tmp_path / "src" / "masks" / "im001.png")
  os.rename(tmp_path / "src" / "images" / "im002.png", tmp_path / "src" / "images" / "x.png")
  with pytest.raises(DatasetError, match="do not match: 3 problem") as info:
    datasets.load(folder_config(tmp_path, tmp_path / "src", num_classes=3))
  assert_nothing_written(tmp_path)
  message = str(info.value)
  assert "im001.png: no mask named im001.*" in message
  assert "x.png: no mask" in message and "im002.png: no image named im002.*" in message


def test_empty_split(tmp_path):
  write_pairs(tmp_path / "src" / "train", range(4))
  os.makedirs(tmp_path / "src" / "val" / "images")
  os.makedirs(tmp_path / "src" / "val" / "masks")
  load_fails(tmp_path, "split\\(s\\) validation would have no examples")


def test_ratio_split_too_small(tmp_path):
  write_pairs(tmp_path / "src", range(3))
  load_fails(tmp_path, "would have no examples", split_ratios=(0.8, 0.1, 0.1))


def test_sixteen_bit_image(tmp_path):
  write_pairs(tmp_path / "src", range(10))
  os.remove(tmp_path / "src" / "images" / "im006.png")
  deep = np.full((HEIGHT, WIDTH), 40000, np.uint16)
  Image.fromarray(deep).save(tmp_path / "src" / "images" / "im006.png")
  load_fails(tmp_path, r"im006\.png: unsupported image mode .*16-bit")


def test_colour_not_in_table(tmp_path):
  write_pairs(tmp_path / "src", range(10), "color", 4)
  mask = np.array(COLORS, np.uint8)[class_map(8, 4)]
  mask[2, 3] = (9, 9, 9)
  Image.fromarray(mask).save(tmp_path / "src" / "masks" / "im008.png")
  load_fails(tmp_path, r"im008\.png: 1 mask colour\(s\) not in dataset.class_colors: "
             r"\(9, 9, 9\) \(1 px\)", num_classes=4, mask_encoding="color", class_colors=COLORS)


def test_every_problem_listed_at_once(tmp_path):
  write_pairs(tmp_path / "src", range(10))
  (tmp_path / "src" / "images" / "im001.png").write_bytes(b"")
  Image.fromarray(np.full((HEIGHT, WIDTH), 9, np.uint8)).save(
      tmp_path / "src" / "masks" / "im002.png")
  with pytest.raises(DatasetError, match="2 problem") as info:
    datasets.load(folder_config(tmp_path, tmp_path / "src", num_classes=3))
  assert "im001.png" in str(info.value) and "im002.png" in str(info.value)


@pytest.mark.parametrize("overrides, match", [
    ({"mask_encoding": "rle"}, "dataset.mask_encoding='rle'"),
    ({"mask_encoding": "color"}, "dataset.class_colors"),
    ({"class_names": ("a", "b")}, "dataset.class_names has 2 names"),
    ({"ignore_index": 1}, "dataset.ignore_index=1 is a class index"),
    ({"split_ratios": (0.5, 0.6, 0.0)}, "dataset.split_ratios"),
    ({"source_dir": ""}, "set dataset.source_dir"),
])
def test_bad_options_name_the_key(tmp_path, overrides, match):
  write_pairs(tmp_path / "src", range(10))
  load_fails(tmp_path, match, **overrides)


def test_splits_pickle_for_grain_workers(tmp_path):
  """Worker processes get the sources pickled; unpickling reads the same records."""
  write_pairs(tmp_path / "src", range(10))
  data = datasets.load(folder_config(tmp_path, tmp_path / "src", num_classes=3))
  copy = pickle.loads(pickle.dumps(data.train))
  np.testing.assert_array_equal(copy[2]["image"], data.train[2]["image"])
  os.utime(tmp_path / "src" / "masks" / "im000.png", ns=(5, 5))  # Not listed again.
  assert pickle.loads(pickle.dumps(data.eval))[0]["mask"].shape == (HEIGHT, WIDTH, 1)
