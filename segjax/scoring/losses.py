"""Losses, and the training objective as a weighted sum of them.

Every loss sees the same `valid` mask (pixels whose label is not the ignore
index), which is also what the metrics count. A model with one output channel
is binary: its logit goes through a sigmoid (foreground probability) instead
of a softmax.

Each loss is a sum over "units" (pixels or images) divided by a normaliser
that depends only on the labels. The objective divides every micro-batch's
sums by the normalisers of the whole global batch, so gradient accumulation
gives exactly the large-batch gradient, and an evaluation split's loss is
exact however it is batched.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

EPSILON = 1e-6


def probabilities(logits: jax.Array) -> jax.Array:
  """(N, H, W, C) logits -> (N, H, W, max(C, 2)) probabilities (sigmoid when C == 1)."""
  logits = logits.astype(jnp.float32)
  if logits.shape[-1] == 1:
    foreground = jax.nn.sigmoid(logits)
    return jnp.concatenate([1 - foreground, foreground], -1)
  return jax.nn.softmax(logits, -1)


def predicted_classes(logits: jax.Array) -> jax.Array:
  """(N, H, W, C) logits -> int32 (N, H, W); for one channel, logit > 0 is class 1."""
  if logits.shape[-1] == 1:
    return (logits[..., 0] > 0).astype(jnp.int32)
  return jnp.argmax(logits, -1).astype(jnp.int32)


def _log_probabilities(logits: jax.Array) -> jax.Array:
  logits = logits.astype(jnp.float32)
  if logits.shape[-1] == 1:
    return jnp.concatenate([jax.nn.log_sigmoid(-logits), jax.nn.log_sigmoid(logits)], -1)
  return jax.nn.log_softmax(logits, -1)


@dataclasses.dataclass(frozen=True)
class Context:
  """What every loss sees: labels int (N, H, W), valid bool (N, H, W), pixel weights."""
  labels: jax.Array
  valid: jax.Array
  pixel_weights: jax.Array  # Class weight of each valid pixel's label, 0 where invalid.
  focal_gamma: float

  def one_hot(self, num_classes: int) -> jax.Array:
    return jax.nn.one_hot(jnp.where(self.valid, self.labels, 0), num_classes) * self.valid[..., None]


def cross_entropy(logits, ctx: Context):
  """Softmax (or sigmoid) cross-entropy, class-weighted; a sum over pixels."""
  log_probs = _log_probabilities(logits)
  picked = jnp.take_along_axis(log_probs, jnp.where(ctx.valid, ctx.labels, 0)[..., None], -1)[..., 0]
  return -jnp.sum(picked * ctx.pixel_weights)


def focal(logits, ctx: Context):
  """Focal loss (Lin et al. 2017), -(1 - p_t)^gamma log p_t, class-weighted."""
  log_probs = _log_probabilities(logits)
  picked = jnp.take_along_axis(log_probs, jnp.where(ctx.valid, ctx.labels, 0)[..., None], -1)[..., 0]
  return -jnp.sum((1 - jnp.exp(picked)) ** ctx.focal_gamma * picked * ctx.pixel_weights)


def soft_dice(logits, ctx: Context):
  """1 - soft Dice, 2 sum(p t) / (sum(p) + sum(t)), averaged over the classes present
  in each image's valid labels; a sum over images (an image without a valid pixel
  adds 0).

  A class absent from the labels is left out rather than smoothed: its Dice is 0
  whatever the prediction (no overlap), so it would add a constant with no
  gradient and shrink the present classes' gradient by the class count. Its
  predicted pixels still lower the Dice of the classes they belong to.
  """
  probs = probabilities(logits) * ctx.valid[..., None]
  target = ctx.one_hot(probs.shape[-1])
  intersection = jnp.sum(probs * target, axis=(1, 2))
  target_sizes = jnp.sum(target, axis=(1, 2))
  sizes = jnp.sum(probs, axis=(1, 2)) + target_sizes
  present = target_sizes > 0  # (N, C); sizes >= 1 where present.
  dice = 2 * intersection / jnp.maximum(sizes, EPSILON)
  per_image = jnp.sum(jnp.where(present, 1 - dice, 0.0), -1)
  return jnp.sum(per_image / jnp.maximum(jnp.sum(present, -1), 1))


def rmse(logits, ctx: Context):
  """Root mean squared error between probabilities and one-hot targets, per image
  (the LFW seed's loss for a sigmoid output); a sum over images."""
  probs = probabilities(logits)
  squared = jnp.sum((probs - ctx.one_hot(probs.shape[-1])) ** 2, -1) * ctx.valid
  count = jnp.maximum(jnp.sum(ctx.valid, axis=(1, 2)), 1)
  if logits.shape[-1] == 1:
    squared = squared / 2  # Both sigmoid columns carry the same error.
  return jnp.sum(jnp.sqrt(jnp.sum(squared, axis=(1, 2)) / count + EPSILON))


@dataclasses.dataclass(frozen=True)
class LossSpec:
  fn: Callable[[jax.Array, Context], jax.Array]
  per: str  # "pixel": normalised by the weighted count of valid pixels; "image": by images.


LOSSES = {
    "cross_entropy": LossSpec(cross_entropy, "pixel"),
    "focal": LossSpec(focal, "pixel"),
    "dice": LossSpec(soft_dice, "image"),
    "rmse": LossSpec(rmse, "image"),
}


class Objective:
  """The weighted sum `sum_k weight_k * sum_k / normaliser_k` of the configured losses."""

  def __init__(self, loss_weights: dict, class_weights: Sequence[float] = (),
               focal_gamma: float = 2.0):
    unknown = sorted(set(loss_weights) - set(LOSSES))
    if unknown:
      raise ValueError(f"unknown loss {unknown} in loss_weights; available: {', '.join(LOSSES)}")
    self.weights = {name: float(w) for name, w in loss_weights.items() if w}
    if not self.weights:
      raise ValueError("every weight in loss_weights is 0: nothing to train on")
    self.class_weights = tuple(float(w) for w in class_weights)
    self.focal_gamma = focal_gamma

  def context(self, labels: jax.Array, valid: jax.Array) -> Context:
    if self.class_weights:
      table = jnp.asarray(self.class_weights, jnp.float32)
      weights = table[jnp.clip(labels, 0, len(self.class_weights) - 1)] * valid
    else:
      weights = valid.astype(jnp.float32)
    return Context(labels, valid, weights, self.focal_gamma)

  def normalisers(self, labels: jax.Array, valid: jax.Array) -> dict:
    pixel_weight = jnp.sum(self.context(labels, valid).pixel_weights)
    images = jnp.sum(jnp.any(valid, axis=(1, 2))).astype(jnp.float32)
    return {name: pixel_weight if LOSSES[name].per == "pixel" else images for name in self.weights}

  def sums(self, logits: jax.Array, labels: jax.Array, valid: jax.Array) -> dict:
    ctx = self.context(labels, valid)
    return {name: LOSSES[name].fn(logits, ctx) for name in self.weights}

  def combine(self, sums: dict, normalisers: dict) -> jax.Array:
    return sum(self.weights[name] * sums[name] / jnp.maximum(normalisers[name], EPSILON)
               for name in self.weights)

  def __call__(self, logits, labels, valid, normalisers) -> jax.Array:
    return self.combine(self.sums(logits, labels, valid), normalisers)


def from_config(config) -> Objective:
  return Objective(dict(config.loss_weights), tuple(config.class_weights), config.focal_gamma)
