"""Losses against numpy references: class weights, ignored pixels, absent classes, sigmoid."""

import jax.numpy as jnp
import numpy as np
import pytest

from segjax.scoring import losses


def softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def sigmoid_probs(x):
  p = 1 / (1 + np.exp(-x[..., 0]))
  return np.stack([1 - p, p], -1)


def case(num_classes, seed=0):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(3, 5, 4, num_classes)).astype(np.float32) * 2
  labels = rng.integers(0, max(num_classes, 2), size=(3, 5, 4))
  labels[0, 0, :] = 255  # Ignored pixels.
  labels[2] = 0  # An image where class 1 is absent.
  return logits, labels, labels != 255


def objective_loss(name, logits, labels, valid, **kwargs):
  objective = losses.Objective({name: 1.0}, **kwargs)
  labels, valid = jnp.asarray(labels), jnp.asarray(valid)
  return float(objective(jnp.asarray(logits), labels, valid, objective.normalisers(labels, valid)))


@pytest.mark.parametrize("num_classes", [1, 3])
def test_cross_entropy_with_class_weights_and_ignored_pixels(num_classes):
  logits, labels, valid = case(num_classes)
  probs = sigmoid_probs(logits) if num_classes == 1 else softmax(logits)
  weights = np.array([0.5, 2.0, 1.5][:probs.shape[-1]])
  safe = np.where(valid, labels, 0)
  picked = np.take_along_axis(probs, safe[..., None], -1)[..., 0]
  w = weights[safe] * valid
  expected = -(w * np.log(picked)).sum() / w.sum()
  got = objective_loss("cross_entropy", logits, labels, valid, class_weights=tuple(weights))
  assert got == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_ignores_ignored_pixels_entirely():
  logits, labels, valid = case(3)
  changed = logits.copy()
  changed[~valid] = 1e3  # Whatever the logits of ignored pixels, the loss is the same.
  assert objective_loss("cross_entropy", logits, labels, valid) == pytest.approx(
      objective_loss("cross_entropy", changed, labels, valid), rel=1e-6)


def test_focal_reduces_to_cross_entropy_at_gamma_zero_and_matches_numpy():
  logits, labels, valid = case(3)
  assert objective_loss("focal", logits, labels, valid, focal_gamma=0.0) == pytest.approx(
      objective_loss("cross_entropy", logits, labels, valid), rel=1e-5)
  probs = softmax(logits)
  picked = np.take_along_axis(probs, np.where(valid, labels, 0)[..., None], -1)[..., 0]
  expected = -(((1 - picked) ** 2 * np.log(picked)) * valid).sum() / valid.sum()
  assert objective_loss("focal", logits, labels, valid, focal_gamma=2.0) == pytest.approx(
      expected, rel=1e-5)


@pytest.mark.parametrize("num_classes", [1, 3])
def test_soft_dice_per_image_over_the_classes_present(num_classes):
  logits, labels, valid = case(num_classes)
  probs = sigmoid_probs(logits) if num_classes == 1 else softmax(logits)
  c = probs.shape[-1]
  per_image = []
  for n in range(len(labels)):
    dices = []
    for k in range(c):
      p = probs[n, ..., k] * valid[n]
      t = ((labels[n] == k) & valid[n]).astype(float)
      if t.sum():  # Image 2 has class 0 only: its other classes are left out.
        dices.append(2 * (p * t).sum() / (p.sum() + t.sum()))
    per_image.append(1 - np.mean(dices))
  assert objective_loss("dice", logits, labels, valid) == pytest.approx(np.mean(per_image),
                                                                         rel=1e-5)


def test_soft_dice_by_hand_adds_nothing_for_absent_classes():
  """Two images of two pixels, three classes; softmax of log-probabilities gives them back.

  Image 0, labels (0, 1), probabilities (1/2, 1/4, 1/4) and (1/4, 1/2, 1/4):
    class 0: overlap 1/2, predicted 3/4, true 1: Dice 2 (1/2) / (7/4) = 4/7; class 1 the
    same; class 2 is absent: loss 1 - 4/7 = 3/7.
  Image 1, labels (2, ignored), first pixel (1/4, 1/4, 1/2):
    class 2: overlap 1/2, predicted 1/2, true 1: Dice 1 / (3/2) = 2/3: loss 1/3.
  Mean over the images: (3/7 + 1/3) / 2 = 8/21. (Averaging over all three classes, absent
  ones scoring ~0, gave (13/21 + 7/9) / 2.)
  """
  probs = np.array([[[[2, 1, 1], [1, 2, 1]]], [[[1, 1, 2], [2, 1, 1]]]], np.float32) / 4
  labels = np.array([[[0, 1]], [[2, 255]]])
  got = objective_loss("dice", np.log(probs), labels, labels != 255)
  assert got == pytest.approx(8 / 21, rel=1e-6)


def test_rmse_of_a_sigmoid_output_is_the_seed_loss():
  logits, labels, valid = case(1)
  p = 1 / (1 + np.exp(-logits[..., 0]))
  per_image = [np.sqrt((((p[n] - labels[n]) ** 2) * valid[n]).sum() / valid[n].sum())
               for n in range(len(labels))]
  assert objective_loss("rmse", logits, labels, valid) == pytest.approx(np.mean(per_image),
                                                                         rel=1e-4)


def test_weighted_sum_and_batch_split_invariance():
  logits, labels, valid = case(3)
  objective = losses.Objective({"cross_entropy": 1.0, "dice": 0.5})
  whole = objective.normalisers(jnp.asarray(labels), jnp.asarray(valid))
  full = float(objective(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(valid), whole))
  # Parts normalised by the whole batch add up to the whole batch's loss.
  parts = sum(float(objective(jnp.asarray(logits[i:i + 1]), jnp.asarray(labels[i:i + 1]),
                              jnp.asarray(valid[i:i + 1]), whole)) for i in range(3))
  assert parts == pytest.approx(full, rel=1e-5)
  expected = (objective_loss("cross_entropy", logits, labels, valid)
              + 0.5 * objective_loss("dice", logits, labels, valid))
  assert full == pytest.approx(expected, rel=1e-5)


def test_unknown_loss_and_all_zero_weights_are_errors():
  with pytest.raises(ValueError, match="unknown loss"):
    losses.Objective({"hinge": 1.0})
  with pytest.raises(ValueError, match="nothing to train"):
    losses.Objective({"cross_entropy": 0.0})


def test_one_channel_predictions_threshold_the_logit():
  logits = jnp.array([[[[-0.5], [0.3]]]])
  np.testing.assert_array_equal(losses.predicted_classes(logits), [[[0, 1]]])
