"""Image and mask decoding rules of segjax.data.images, without TFDS."""

import numpy as np
import pytest
from PIL import Image

from segjax.data import images
from segjax.data.images import DatasetError, MaskOptions


def decode(array, mode=None, **options):
  image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
  return images.decode_mask(image, "m.png", MaskOptions(**options))


def test_index_masks_from_gray_rgb_and_16_bit():
  classes = np.array([[0, 1], [2, 255]], np.uint8)
  np.testing.assert_array_equal(decode(classes, num_classes=3), classes)
  np.testing.assert_array_equal(decode(np.repeat(classes[..., None], 3, -1), num_classes=3),
                                classes)
  np.testing.assert_array_equal(decode(classes.astype(np.uint16), num_classes=3), classes)
  with pytest.raises(DatasetError, match=r"m.png: mask values \[300\]"):
    decode(np.array([[0, 300]], np.uint16), num_classes=3)
  with pytest.raises(DatasetError, match="colour image .* with unequal channels"):
    decode(np.array([[[0, 1, 2]]], np.uint8), num_classes=3)


def test_binary_and_threshold():
  np.testing.assert_array_equal(decode(np.array([[0, 255]], np.uint8), encoding="binary"),
                                [[0, 1]])
  with pytest.raises(DatasetError, match="found also \\[128\\].*mask_encoding='threshold'"):
    decode(np.array([[0, 128, 255]], np.uint8), encoding="binary")
  np.testing.assert_array_equal(
      decode(np.array([[3, 127, 128, 250]], np.uint8), encoding="threshold"), [[0, 0, 1, 1]])


def test_palette_needs_a_palette_image():
  with pytest.raises(DatasetError, match="needs a palette \\(P\\) image"):
    decode(np.zeros((2, 2), np.uint8), encoding="palette")


def test_rgba_composited_on_black_and_modes_rejected():
  rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 0], [200, 100, 50, 128]]], np.uint8)
  rgb = np.asarray(images.to_rgb(Image.fromarray(rgba, "RGBA"), "i.png"))
  np.testing.assert_array_equal(rgb, [[[200, 100, 50], [0, 0, 0], [100, 50, 25]]])
  with pytest.raises(DatasetError, match="i.tif: unsupported image mode 'F' \\(32-bit float\\)"):
    images.to_rgb(Image.fromarray(np.zeros((2, 2), np.float32)), "i.tif")


def test_split_by_ratios():
  parts = images.split_by_ratios(range(20), (0.7, 0.15, 0.15), ("a", "b", "c"))
  assert parts == {"a": list(range(14)), "b": [14, 15, 16], "c": [17, 18, 19]}
  lfw = images.split_by_ratios(range(2927), (0.7, 0.15, 0.15), ("a", "b", "c"))
  assert [len(part) for part in lfw.values()] == [2049, 439, 439]
  shuffled = images.split_by_ratios(range(10), (0.5, 0.5), ("a", "b"), seed=3)
  assert shuffled == images.split_by_ratios(range(10), (0.5, 0.5), ("a", "b"), seed=3)
  assert sorted(shuffled["a"] + shuffled["b"]) == list(range(10))
  with pytest.raises(DatasetError, match="dataset.split_ratios"):
    images.split_by_ratios(range(10), (0.5, 0.6), ("a", "b"))
