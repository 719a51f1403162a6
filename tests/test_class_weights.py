"""Median- and inverse-frequency class weights: exact values on a tiny dataset, one
pass, the cache beside the prepared data, and the config key's forms."""

import numpy as np
import pytest

from segjax import config as config_lib
from segjax.data import class_weights
from segjax.data.registry import SegmentationData


class CountingSource:
  """Records with the given masks; counts reads."""

  def __init__(self, masks):
    self.masks, self.reads = masks, 0

  def __len__(self):
    return len(self.masks)

  def __getitem__(self, index):
    self.reads += 1
    mask = np.asarray(self.masks[index], np.uint8)
    return {"image": np.zeros(mask.shape + (3,), np.uint8), "mask": mask[..., None]}

  def __repr__(self):
    return "CountingSource(tiny)"


# Three classes; 255 is ignored. Image 0: 6 px of 0, 2 of 1, 1 ignored. Image 1: 4 of 0,
# 4 of 2, 1 ignored. Image 2: 1 of 1, 8 of 2.
MASKS = [[[0, 0, 0], [0, 0, 0], [1, 1, 255]],
         [[0, 0, 2], [0, 0, 2], [2, 2, 255]],
         [[1, 2, 2], [2, 2, 2], [2, 2, 2]]]


def tiny_data(masks=MASKS, names=("a", "b", "c")):
  source = CountingSource(masks)
  return SegmentationData(train=source, eval=source, num_classes=len(names), class_names=names,
                          ignore_index=255), source


def test_counts_and_weights_are_exact():
  data, _ = tiny_data()
  class_pixels, image_pixels = class_weights.pixel_counts(data.train, 3, 255)
  assert class_pixels.tolist() == [10, 3, 12]
  assert image_pixels.tolist() == [8 + 8, 8 + 9, 8 + 9]  # Labelled pixels of images with c.
  frequency = np.array([10 / 16, 3 / 17, 12 / 17])
  np.testing.assert_allclose(class_weights.from_counts("median_frequency", class_pixels,
                                                       image_pixels),
                             np.median(frequency) / frequency, rtol=1e-12)
  np.testing.assert_allclose(class_weights.from_counts("inverse_frequency", class_pixels,
                                                       image_pixels),
                             [25 / 30, 25 / 9, 25 / 36], rtol=1e-12)


def test_absent_class_gets_zero_and_a_warning():
  data, _ = tiny_data(MASKS, ("a", "b", "c", "d"))
  messages = []
  weights = class_weights.compute("median_frequency", data, None, messages.append)
  assert weights[3] == 0 and all(w > 0 for w in weights[:3])
  assert any("d have no training pixel" in m for m in messages)


def test_one_pass_then_the_cache(tmp_path):
  data, source = tiny_data()
  first = class_weights.compute("median_frequency", data, str(tmp_path), lambda _: None)
  assert source.reads == 3
  again = class_weights.compute("median_frequency", data, str(tmp_path), lambda _: None)
  inverse = class_weights.compute("inverse_frequency", data, str(tmp_path), lambda _: None)
  assert source.reads == 3 and again == first  # Both methods from the cached counts.
  assert inverse == pytest.approx((25 / 30, 25 / 9, 25 / 36))
  assert len(list((tmp_path / class_weights.CACHE_FOLDER).iterdir())) == 1


def test_config_key_forms(tmp_path):
  data, _ = tiny_data()
  config = config_lib.base_config()
  config.dataset.data_dir = str(tmp_path)
  for value in ("median_frequency", ("median_frequency",)):  # File / command line forms.
    config.class_weights = value
    resolved = class_weights.resolve(config, data, lambda _: None)
    assert len(resolved.class_weights) == 3 and resolved.is_locked
  config.class_weights = (1.0, 2.0)
  with pytest.raises(ValueError, match="class_weights has 2 entries but dataset"):
    class_weights.resolve(config, data)
  config.class_weights = "median"
  with pytest.raises(ValueError, match="median_frequency, inverse_frequency"):
    class_weights.resolve(config, data)
  config.class_weights = (1.0, 2.0, 3.0)
  assert class_weights.resolve(config, data) is config


def test_a_mask_value_that_is_no_class_is_an_error():
  data, _ = tiny_data([[[0, 7]]])
  with pytest.raises(ValueError, match="mask values \\[7\\]"):
    class_weights.pixel_counts(data.train, 3, 255)


def test_config_check_accepts_a_method_and_names_a_wrong_one(tmp_path):
  from conftest import small_config
  from segjax.training import config_check
  config = small_config(str(tmp_path))
  config.class_weights = "inverse_frequency"
  config_check.check(config)
  config.class_weights = "median"
  with pytest.raises(config_check.ConfigError, match="class_weights='median': use a tuple"):
    config_check.check(config)
