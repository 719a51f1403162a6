"""Metrics against a plain numpy reference, edge cases included."""

import jax.numpy as jnp
import numpy as np
import pytest

from segjax.scoring import metrics


def reference_confusion(labels, predictions, valid, num_classes):
  confusion = np.zeros((num_classes, num_classes), np.int64)
  for label, prediction, keep in zip(labels.ravel(), predictions.ravel(), valid.ravel()):
    if keep:
      confusion[label, prediction] += 1
  return confusion


def reference_metrics(labels, predictions, num_classes):
  """Per-class IoU/Dice from pixel sets, written independently of the confusion matrix."""
  ious, dices = [], []
  for c in range(num_classes):
    truth, guess = labels == c, predictions == c
    union = np.sum(truth | guess)
    ious.append(np.sum(truth & guess) / union if union else np.nan)
    total = np.sum(truth) + np.sum(guess)
    dices.append(2 * np.sum(truth & guess) / total if total else np.nan)
  return np.array(ious), np.array(dices), np.mean(labels == predictions)


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_confusion_and_metrics_match_numpy(num_classes):
  rng = np.random.default_rng(num_classes)
  labels = rng.integers(0, num_classes, size=(3, 9, 7))
  predictions = rng.integers(0, num_classes, size=(3, 9, 7))
  valid = rng.random((3, 9, 7)) < 0.8
  confusion = np.asarray(metrics.confusion_matrix(
      jnp.asarray(np.where(valid, labels, 255)), jnp.asarray(predictions), jnp.asarray(valid),
      num_classes))
  np.testing.assert_array_equal(confusion, reference_confusion(labels, predictions, valid,
                                                               num_classes))
  result = metrics.from_confusion_matrix(confusion)
  ious, dices, accuracy = reference_metrics(labels[valid], predictions[valid], num_classes)
  np.testing.assert_allclose(result["iou_per_class"], ious)
  np.testing.assert_allclose(result["pixel_accuracy"], accuracy)
  np.testing.assert_allclose(result["mean_iou"], np.nanmean(ious))
  expected_f1 = dices[1] if num_classes == 2 else np.nanmean(dices)
  np.testing.assert_allclose(result["f1"], expected_f1)


def test_class_absent_from_truth_and_prediction_is_left_out_of_means():
  labels = np.array([0, 0, 1, 1, 0, 1])
  predictions = np.array([0, 1, 1, 1, 0, 0])  # Class 2 of 3 appears nowhere.
  confusion = reference_confusion(labels, predictions, np.ones(6, bool), 3)
  result = metrics.from_confusion_matrix(confusion)
  assert np.isnan(result["iou_per_class"][2])
  # Classes 0 and 1: IoU 2/4 each.
  assert result["mean_iou"] == pytest.approx(0.5)
  assert result["f1"] == pytest.approx(2 / 3)  # Mean Dice of classes 0 and 1: 2*2/(3+3) each.


def test_all_background():
  confusion = np.array([[100, 0], [0, 0]])
  result = metrics.from_confusion_matrix(confusion)
  assert result["pixel_accuracy"] == 1.0
  assert result["mean_iou"] == 1.0  # Foreground absent from both: not counted.
  assert np.isnan(result["f1"])  # Foreground F1 is undefined with no foreground anywhere.


def test_all_background_truth_with_false_positives():
  result = metrics.from_confusion_matrix(np.array([[90, 10], [0, 0]]))
  assert result["f1"] == 0.0
  assert result["iou_per_class"] == pytest.approx([0.9, 0.0])
  assert result["mean_iou"] == pytest.approx(0.45)


def test_invalid_pixels_count_nowhere():
  labels = jnp.array([0, 1, 255, 255])
  predictions = jnp.array([0, 1, 1, 0])
  valid = labels != 255
  confusion = metrics.confusion_matrix(labels, predictions, valid, 2)
  np.testing.assert_array_equal(confusion, [[1, 0], [0, 1]])
