"""The synthetic skin data: deterministic, and not solvable by colour alone."""

import numpy as np

from segjax.data import synthetic_skin
from segjax.scoring.metrics import from_confusion_matrix


def test_examples_are_deterministic_and_well_formed():
  image, mask = synthetic_skin.generate_example(0, 1, 7)
  again_image, again_mask = synthetic_skin.generate_example(0, 1, 7)
  np.testing.assert_array_equal(image, again_image)
  np.testing.assert_array_equal(mask, again_mask)
  assert image.shape == (128, 128, 3) and image.dtype == np.uint8
  assert mask.shape == (128, 128) and set(np.unique(mask)) <= {0, 1}
  other, _ = synthetic_skin.generate_example(0, 1, 8)
  assert not np.array_equal(image, other)


def _colour_bins(image, levels=32):
  q = (image.astype(np.int64) * levels) // 256
  return (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]


def test_best_per_pixel_colour_classifier_falls_short():
  """The best classifier of a pixel by its colour alone (a lookup table fitted on
  train pixels, 32 levels per channel) stays far below the F1 a network reaches."""
  skin = np.zeros(32 ** 3)
  total = np.zeros(32 ** 3)
  for index in range(150):
    image, mask = synthetic_skin.generate_example(0, 0, index)
    bins = _colour_bins(image).ravel()
    skin += np.bincount(bins, weights=mask.ravel(), minlength=32 ** 3)
    total += np.bincount(bins, minlength=32 ** 3)
  is_skin = skin > total / 2
  confusion = np.zeros((2, 2), np.int64)
  for index in range(50):
    image, mask = synthetic_skin.generate_example(0, 1, index)
    prediction = is_skin[_colour_bins(image)].astype(np.int64)
    confusion += np.bincount(mask.ravel() * 2 + prediction.ravel(), minlength=4).reshape(2, 2)
  f1 = from_confusion_matrix(confusion)["f1"]
  assert 0.2 < f1 < 0.8, f1
