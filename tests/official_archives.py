"""Tiny copies of the public datasets' official files, in their exact formats (file
names, archive layout, byte formats), with a handful of small images each."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile

import numpy as np
from PIL import Image


def encode(image: np.ndarray | Image.Image, format: str, **options) -> bytes:
  buffer = io.BytesIO()
  (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(
      buffer, format, **options)
  return buffer.getvalue()


def write_tar(path: str, members: dict[str, bytes], compression: str = "") -> str:
  """A tar (mode "w:gz" when compression="gz") of the members in the given order."""
  with tarfile.open(path, f"w:{compression}" if compression else "w") as archive:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))
  return path


def rgb(seed: int, height: int = 12, width: int = 16) -> np.ndarray:
  """A smooth image (JPEG keeps it within a few levels), different for each seed."""
  y, x = np.mgrid[:height, :width]
  planes = (40 + 9 * y + 17 * seed, 30 + 7 * x, 120 + 4 * (x + y) - 13 * seed)
  return (np.stack(planes, -1) % 200).astype(np.uint8)


def labels(seed: int, values, height: int = 12, width: int = 16) -> np.ndarray:
  return np.random.default_rng(seed).choice(np.asarray(values, np.uint8), (height, width))


# Oxford-IIIT Pet: images.tar.gz (images/NAME.jpg) and annotations.tar.gz.
PET_TRAIN = ("Abyssinian_5", "beagle_12")     # Abyssinian_5: one of TFDS's corrupt samples.
PET_TEST = ("Bombay_3", "pug_40")             # Bombay_3: a PNG file named .jpg.


def write_pets(folder: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Writes both archives; returns {name: (RGB image, trimap)} as written."""
  written, image_members, trimaps = {}, {}, {}
  for index, name in enumerate(PET_TRAIN + PET_TEST):
    image, trimap = rgb(index), labels(index, (1, 2, 3))
    written[name] = (image, trimap)
    image_format = "PNG" if name == "Bombay_3" else "JPEG"
    image_members[f"images/{name}.jpg"] = encode(image, image_format)
    trimaps[f"annotations/trimaps/{name}.png"] = encode(trimap, "PNG")
    trimaps[f"annotations/trimaps/._{name}.png"] = b"\0\5\26\7 AppleDouble"  # As published.
  image_members["images/Abyssinian_100.mat"] = b"MATLAB 5.0"  # Other files are skipped.
  line = lambda name: f"{name} 1 {1 + name[0].isupper()} 1\n"
  lists = {
      "annotations/list.txt": b"#Image CLASS-ID SPECIES BREED ID\n",
      "annotations/trainval.txt": "".join(map(line, PET_TRAIN)).encode(),
      "annotations/test.txt": "".join(map(line, PET_TEST)).encode(),
      "annotations/xmls/Abyssinian_5.xml": b"<annotation></annotation>",
  }
  # TFDS notes that the published images.tar.gz is an uncompressed tar despite its
  # name: written so here; the annotations gzip-compressed.
  write_tar(os.path.join(folder, "images.tar.gz"), image_members)
  write_tar(os.path.join(folder, "annotations.tar.gz"), {**lists, **trimaps}, "gz")
  return written


# MNIST: four gzip idx files.
MNIST_COUNTS = {"train": 3, "t10k": 2}


def idx_bytes(array: np.ndarray) -> bytes:
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
      int(n).to_bytes(4, "big") for n in array.shape)
  return header + array.astype(np.uint8).tobytes()


def write_mnist(folder: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  written = {}
  for prefix, count in MNIST_COUNTS.items():
    digits = np.random.default_rng(count).integers(0, 256, (count, 28, 28), np.uint8)
    digit_labels = np.arange(count, dtype=np.uint8) + 3
    for kind, array in (("images-idx3", digits), ("labels-idx1", digit_labels)):
      with open(os.path.join(folder, f"{prefix}-{kind}-ubyte.gz"), "wb") as f:
        f.write(gzip.compress(idx_bytes(array)))
    written["train" if prefix == "train" else "test"] = (digits, digit_labels)
  return written


# CIFAR-10: cifar-10-python.tar.gz with pickled batches (protocol 2, bytes keys).
def cifar_batch(images: np.ndarray, batch_labels: list[int], label: bytes) -> bytes:
  data = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # R, G, B planes.
  return pickle.dumps({b"batch_label": label, b"labels": batch_labels, b"data": data,
                       b"filenames": [b"photo_%d.png" % i for i in range(len(images))]},
                      protocol=2)


def write_cifar10(folder: str) -> dict[str, np.ndarray]:
  members, train = {}, []
  for batch in range(1, 6):
    images = np.stack([rgb(10 * batch + i, 32, 32) for i in range(2)])
    train.append(images)
    members[f"cifar-10-batches-py/data_batch_{batch}"] = cifar_batch(
        images, [batch, 9 - batch], b"training batch %d of 5" % batch)
  test = np.stack([rgb(99, 32, 32)])
  members["cifar-10-batches-py/test_batch"] = cifar_batch(test, [0], b"testing batch 1 of 1")
  members["cifar-10-batches-py/batches.meta"] = pickle.dumps(
      {b"label_names": [b"airplane"], b"num_vis": 3072}, protocol=2)
  members["cifar-10-batches-py/readme.html"] = b"<html></html>"
  write_tar(os.path.join(folder, "cifar-10-python.tar.gz"), members, "gz")
  return {"train": np.concatenate(train), "test": test}


# CamVid, SegNet's layout: train/ trainannot/ val/ valannot/ test/ testannot/.
CAMVID_SPLITS = {"train": ("train", "trainannot"), "validation": ("val", "valannot"),
                 "test": ("test", "testannot")}


def write_camvid(folder: str, image_format: str = "PNG") -> dict[str, np.ndarray]:
  """Two frames per split (annotation values 0-11); returns {split: masks}."""
  written = {}
  for s, (split, (image_dir, mask_dir)) in enumerate(CAMVID_SPLITS.items()):
    os.makedirs(os.path.join(folder, image_dir))
    os.makedirs(os.path.join(folder, mask_dir))
    masks = []
    for i in range(2):
      stem = f"0001TP_00{s}{i}30"
      extension = ".png" if image_format == "PNG" else ".jpg"
      with open(os.path.join(folder, image_dir, stem + extension), "wb") as f:
        f.write(encode(rgb(s * 2 + i), image_format))
      mask = labels(s * 2 + i, range(12))
      Image.fromarray(mask, "L").save(os.path.join(folder, mask_dir, stem + ".png"))
      masks.append(mask)
    written[split] = np.stack(masks)
  return written


# PASCAL VOC 2012: VOCtrainval_11-May-2012.tar (uncompressed).
VOC_TRAIN = ("2007_000032", "2008_000002")
VOC_VAL = ("2007_000033",)
VOC_PALETTE = [v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)]


def write_voc(folder: str) -> dict[str, np.ndarray]:
  """Returns {name: mask} (classes 0-20, 255 at borders) as written."""
  root = "VOCdevkit/VOC2012"
  members, masks = {}, {}
  members[f"{root}/ImageSets/Segmentation/train.txt"] = "\n".join(VOC_TRAIN).encode() + b"\n"
  members[f"{root}/ImageSets/Segmentation/val.txt"] = "\n".join(VOC_VAL).encode() + b"\n"
  members[f"{root}/ImageSets/Segmentation/trainval.txt"] = (
      "\n".join(VOC_TRAIN + VOC_VAL).encode() + b"\n")
  for i, name in enumerate(VOC_TRAIN + VOC_VAL + ("2007_000039",)):  # Last: not segmented.
    members[f"{root}/JPEGImages/{name}.jpg"] = encode(rgb(i), "JPEG")
  for i, name in enumerate(VOC_TRAIN + VOC_VAL):  # Masks after the images, as published.
    mask = labels(i, (0, 15, 255))
    mask[0, 0], mask[1, 1] = 20, 255
    palette = Image.fromarray(mask, "P")
    palette.putpalette(VOC_PALETTE)
    members[f"{root}/SegmentationClass/{name}.png"] = encode(palette, "PNG")
    masks[name] = mask
  write_tar(os.path.join(folder, "VOCtrainval_11-May-2012.tar"), members)
  return masks
