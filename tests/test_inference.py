"""segjax.inference.segmenter on images of odd sizes and aspect ratios, with tiny models whose
compilation takes well under a second."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.inference import segmenter as segmenter_lib
from segjax.models import registry
from segjax.scoring import metrics


class Pooled(nn.Module):
  """A 1x1 convolution on 4x4-average-pooled input, upsampled back: total stride 4, and
  each output pixel depends on a whole 4x4 block, so padding and windows matter."""
  num_classes: int = 3

  @nn.compact
  def __call__(self, x, train=False):
    n, h, w, c = x.shape
    pooled = nn.avg_pool(x, (4, 4), (4, 4))
    logits = nn.Conv(self.num_classes, (1, 1))(pooled)
    return jnp.repeat(jnp.repeat(logits, 4, axis=1), 4, axis=2)[:, :h, :w]


class Pixelwise(nn.Module):
  """A 1x1 convolution: every pixel on its own (total stride 1)."""
  num_classes: int = 3

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Conv(self.num_classes, (1, 1))(x)


@pytest.fixture(scope="module")
def pooled():
  model = Pooled()
  return model, jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))


_REFERENCES = {}


def reference_logits(model, variables, images):
  """model_logits of uint8 images, jitted once per model (op by op, every operation
  would compile on its own)."""
  if id(model) not in _REFERENCES:
    _REFERENCES[id(model)] = jax.jit(
        lambda v, x: segmenter_lib.model_logits(model.apply, v, x))
  return _REFERENCES[id(model)](variables, images)


def random_images(sizes, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.integers(0, 256, (h, w, 3), np.uint8) for h, w in sizes]


def test_total_stride_of_models():
  assert registry.total_stride(Pooled()) == 4
  assert registry.total_stride(Pixelwise()) == 1


def test_whole_mode_pads_to_the_stride_and_batches_by_shape(pooled):
  model, variables = pooled
  options = segmenter_lib.Options(mode="whole", resize="keep_ratio", total_stride=4, batch_size=2)
  logged = []
  segmenter = segmenter_lib.Segmenter(model.apply, options, log=logged.append)
  images = random_images([(9, 13), (12, 16), (5, 30), (10, 14)])
  groups = list(segmenter.segment(variables, enumerate(images)))
  # (9, 13), (12, 16) and (10, 14) pad to 12x16: the first two fill a batch of two, the
  # last is flushed at the end with a padding row, as is (5, 30) (8x32).
  assert [g.keys for g in groups] == [[0, 1], [2, None], [3, None]]
  assert segmenter.compiled_shapes == [(12, 16), (8, 32)]
  assert len(logged) == 2 and "12x16" in logged[0]
  for group in groups:
    for i, key in enumerate(group.keys):
      if key is None:
        continue
      image = images[key]
      h, w = image.shape[:2]
      assert tuple(group.sizes[i]) == (h, w)
      padded = np.zeros((-(-h // 4) * 4, -(-w // 4) * 4, 3), np.uint8)
      padded[:h, :w] = image
      expected = reference_logits(model, variables, padded[None])[0, :h, :w]
      np.testing.assert_allclose(group.logits[i, :h, :w], expected, rtol=1e-5, atol=1e-5)
      assert not np.asarray(group.logits[i, h:]).any()
      assert not np.asarray(group.logits[i, :, w:]).any()


def test_whole_mode_compiles_at_most_max_shapes(pooled):
  model, variables = pooled
  logged = []
  options = segmenter_lib.Options(mode="whole", resize="keep_ratio", total_stride=4, max_shapes=1,
                              image_size=(8, 8), batch_size=1)
  segmenter = segmenter_lib.Segmenter(model.apply, options, log=logged.append)
  images = random_images([(16, 16), (8, 12), (20, 6)])
  keys = [k for g in segmenter.segment(variables, enumerate(images)) for k in g.keys]
  assert sorted(keys) == [0, 1, 2] and segmenter.compiled_shapes == [(16, 16)]
  # 8x12 fits in 16x16; 20x6 (-> 20x8) fits nowhere and runs in slide mode.
  assert len(logged) == 2 and "slide mode" in logged[1]


def test_slide_mode_averages_overlapping_windows(pooled):
  model, variables = pooled
  options = segmenter_lib.Options(mode="slide", resize="keep_ratio", total_stride=4,
                              image_size=(8, 8), stride=(4, 6), window_batch_size=3)
  segmenter = segmenter_lib.Segmenter(model.apply, options)
  image = random_images([(13, 18)])[0]
  (group,) = list(segmenter.segment(variables, [("a", image)]))
  # Reference: the image padded to 16x20, windows at rows (0, 4, 8), columns (0, 6, 12).
  padded = np.zeros((16, 20, 3), np.uint8)
  padded[:13, :18] = image
  total, count = np.zeros((16, 20, 3)), np.zeros((16, 20, 1))
  for top in (0, 4, 8):
    for left in (0, 6, 12):
      window = padded[None, top:top + 8, left:left + 8]
      total[top:top + 8, left:left + 8] += reference_logits(model, variables, window)[0]
      count[top:top + 8, left:left + 8] += 1
  np.testing.assert_allclose(group.logits[0, :13, :18], (total / count)[:13, :18], rtol=1e-5,
                             atol=1e-5)


def test_window_starts_cover_the_length():
  assert segmenter_lib.window_starts(10, 4, 3) == [0, 3, 6]
  assert segmenter_lib.window_starts(8, 8, 5) == [0]
  assert segmenter_lib.window_starts(11, 4, 4) == [0, 4, 7]


def test_scales_and_flip_average_logits_at_the_original_size():
  """A per-pixel model: at any scale the resized logits of a constant image are constant,
  and with the flip the result is the mirror of the mirror image's."""
  model = Pixelwise()
  variables = jax.jit(model.init)(jax.random.key(1), jnp.zeros((1, 4, 4, 3)))
  options = segmenter_lib.Options(mode="whole", resize="keep_ratio", scales=(0.5, 1.5),
                              flip=True, total_stride=1)
  segmenter = segmenter_lib.Segmenter(model.apply, options)
  segment = lambda image: list(segmenter.segment(
      variables, [(0, np.ascontiguousarray(image))]))[0].logits[0, :7, :11]
  constant = np.full((7, 11, 3), 90, np.uint8)
  expected = reference_logits(model, variables, constant[None])[0]
  np.testing.assert_allclose(segment(constant), expected, rtol=1e-5, atol=1e-5)
  ramp = np.broadcast_to(np.linspace(0, 255, 11).astype(np.uint8)[None, :, None], (7, 11, 3))
  np.testing.assert_allclose(segment(ramp), segment(ramp[:, ::-1])[:, ::-1], rtol=1e-5,
                             atol=1e-5)


def test_test_size_by_resize_policy():
  keep = segmenter_lib.Options(resize="keep_ratio", scale=(384, 288))
  assert segmenter_lib.test_size(768, 512, keep, 1.0) == (384, 256)
  assert segmenter_lib.test_size(576, 768, keep, 0.5) == (144, 192)
  squash = segmenter_lib.Options(resize="squash", image_size=(96, 64))
  assert segmenter_lib.test_size(576, 768, squash, 1.5) == (144, 96)
  with pytest.raises(ValueError, match="eval.mode"):
    segmenter_lib.Options(mode="tiles")


def test_resize_batch_is_half_pixel_bilinear():
  """Against the formula of PyTorch's align_corners=False on a 1-D ramp."""
  x = jnp.asarray(np.arange(6, dtype=np.float32)[None, None, :, None].repeat(2, 1))
  resize = jax.jit(segmenter_lib.resize_batch, static_argnums=3)
  out = resize(x, jnp.array([[2, 3]]), jnp.array([[2, 6]]), (2, 8))
  # Source columns 0..2 stretched to 6: positions (i + 0.5) / 2 - 0.5, clamped.
  np.testing.assert_allclose(out[0, 0, :, 0], [0, 0.25, 0.75, 1.25, 1.75, 2, 0, 0], atol=1e-6)


def test_confusion_counts_stay_exact_past_two_to_the_32():
  add = jax.jit(metrics.add_counts)
  total = metrics.zero_counts(2)
  big = jnp.full((2, 2), 2**31 - 1, jnp.int32)
  for _ in range(5):  # 5 * (2^31 - 1) > 2^33 per cell.
    total = add(total, big)
  total = add(total, jnp.array([[1, 0], [0, 7]], jnp.int32))
  counts = metrics.exact_counts(total)
  assert counts.dtype == np.int64
  np.testing.assert_array_equal(counts, [[5 * (2**31 - 1) + 1, 5 * (2**31 - 1)],
                                         [5 * (2**31 - 1), 5 * (2**31 - 1) + 7]])


def test_evaluation_counts_every_original_pixel_once(pooled):
  """evaluation.evaluate on odd-sized records equals numpy on its predicted masks; the
  picture picks the first images and the worst-scored others."""
  from segjax.inference import evaluation
  from segjax.scoring import losses
  model, variables = pooled
  rng = np.random.default_rng(3)
  records = []
  for h, w in [(9, 13), (12, 16), (5, 30), (10, 14), (7, 7)]:
    mask = rng.integers(0, 3, (h, w)).astype(np.uint8)
    mask[0, 0] = 255  # Ignored.
    records.append({"image": rng.integers(0, 256, (h, w, 3), np.uint8), "mask": mask})
  options = segmenter_lib.Options(mode="whole", resize="keep_ratio", total_stride=4, batch_size=2)
  segmenter = segmenter_lib.Segmenter(model.apply, options)
  result = evaluation.evaluate(segmenter, variables, records, num_classes=3, ignore_index=255,
                               objective=losses.Objective({"cross_entropy": 1.0}))
  predicted = evaluation.predict_masks(segmenter, variables,
                                       {i: r["image"] for i, r in enumerate(records)})
  confusion = np.zeros((3, 3), np.int64)
  for i, record in enumerate(records):
    valid = record["mask"] != 255
    expected = np.zeros((3, 3), np.int64)
    np.add.at(expected, (record["mask"][valid], predicted[i][valid]), 1)
    np.testing.assert_array_equal(result.per_image[i], expected)
    confusion += expected
  assert confusion.sum() == sum(r["mask"].size - 1 for r in records)
  expected_metrics = metrics.from_confusion_matrix(confusion)
  assert result.metrics["mean_iou"] == pytest.approx(expected_metrics["mean_iou"], abs=1e-12)
  assert result.metrics["loss"] > 0
  fixed, worst = evaluation.pick_images(result.per_image, 2)
  assert fixed == [0, 1] and len(worst) == 2 and set(worst) <= {2, 3, 4}
  scores = {i: evaluation.image_score(result.per_image[i]) for i in (2, 3, 4)}
  assert max(scores[i] for i in worst) <= min(scores[i] for i in set(scores) - set(worst))


def test_prediction_grid_keeps_each_aspect_ratio():
  from segjax.inference import visualize
  rng = np.random.default_rng(0)
  rows = []
  for h, w in [(30, 60), (50, 20)]:
    label = rng.integers(0, 2, (h, w)).astype(np.uint8)
    rows.append((rng.integers(0, 256, (h, w, 3), np.uint8), label, 1 - label))
  grid = visualize.prediction_grid(rows, 2, ["wide", "tall"], long_side=64)
  # Columns as wide as the widest picture (64); rows 32 and 64 tall under a title line.
  assert grid.shape[1] == 4 * 64 + 5 * 4 and grid.dtype == np.uint8
  assert grid.shape[0] == 14 + 4 + (32 + 14 + 4) + (64 + 14 + 4)
  errors = visualize.error_map(*rows[0], 2)
  label = rows[0][1]
  assert (errors[label == 1] == visualize.FALSE_NEGATIVE).all()
  assert (errors[label == 0] == visualize.FALSE_POSITIVE).all()
