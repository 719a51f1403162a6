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


def test_whole_mode_pads_to_a_shared_shape_and_batches(pooled):
  model, variables = pooled
  options = segmenter_lib.Options(mode="whole", resize="keep_ratio", total_stride=4, batch_size=2)
  logged = []
  segmenter = segmenter_lib.Segmenter(model.apply, options, log=logged.append)
  images = random_images([(9, 13), (12, 16), (5, 30), (10, 14)])
  groups = list(segmenter.segment(variables, enumerate(images)))
  # Stride-rounded 12x16, 12x16, 8x32, 12x16: padding them all to 12x32 costs far less
  # than a second compilation, so one shape, batches in reading order.
  assert [g.keys for g in groups] == [[0, 1], [2, 3]]
  assert segmenter.compiled_shapes == [(12, 32)]
  assert len(logged) == 1 and "12x32" in logged[0]
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
  images = random_images([(16, 16), (8, 12), (4, 40)])
  keys = [k for g in segmenter.segment(variables, enumerate(images)) for k in g.keys]
  assert sorted(keys) == [0, 1, 2] and segmenter.compiled_shapes == [(16, 16)]
  # 8x12 fits in 16x16; 4x40 with them would take 16x40, more than twice the largest
  # image (planning.MAX_GROWTH): it runs in slide mode.
  assert len(logged) == 2 and "slide mode" in logged[1]
  # Later images use the compiled shape when it holds them.
  keys = [k for g in segmenter.segment(variables, enumerate(random_images([(13, 9)]))) for k in g.keys]
  assert keys == [0] and segmenter.compiled_shapes == [(16, 16)] and len(logged) == 2


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


def test_logits_resize_is_half_pixel_bilinear_when_enlarging():
  """Against the formula of PyTorch's align_corners=False on a 1-D ramp, on a canvas."""
  x = jnp.asarray(np.arange(6, dtype=np.float32)[None, None, :, None].repeat(2, 1))
  rows = segmenter_lib._stacked_taps(np.array([2]), np.array([2]), 2)
  cols = segmenter_lib._stacked_taps(np.array([3]), np.array([6]), 8)
  out = segmenter_lib._to_canvas(None, x, rows, cols)
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


# The resize: one filter for training and inference, against independent references.

def textured_image(height, width, channels=3, seed=0):
  """Noise on a diagonal gradient: every frequency, so a missing antialias shows."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width]
  ramp = 160 * (yy / height + xx / width) / 2 + 40
  return np.clip(ramp[..., None] + rng.normal(0, 45, (height, width, channels)), 0,
                 255).astype(np.uint8)


# (height, width) of 96x120 shrunk 2x, 3x, 4x, 8x, unevenly, and enlarged.
RESIZE_SIZES = [(48, 60), (32, 40), (24, 30), (12, 15), (37, 101), (150, 131), (96, 120)]


def test_resize_matches_pil_and_jax_image_resize():
  from PIL import Image
  from segjax.data import resampling
  image = textured_image(96, 120)
  batch = jnp.asarray(image[None].astype(np.float32))
  for size in RESIZE_SIZES:
    pil = np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR)).astype(int)
    reference = np.asarray(jax.image.resize(batch, (1, *size, 3), "linear", antialias=True))[0]
    device = np.asarray(jax.jit(resampling.resize, static_argnums=1)(batch, size))[0]
    np.testing.assert_allclose(device, reference, atol=2e-3, err_msg=str(size))
    assert np.abs(np.floor(device + 0.5) - pil).max() <= 1, size  # PIL: fixed point.
    host = resampling.resize_image(image, size).astype(int)  # Training's, and inference's input.
    assert np.abs(host - np.floor(reference + 0.5)).max() <= 1, size
  # Shrinking averages noise down as PIL does (4x: std 30, the two-tap formula kept 52).
  noise = np.random.default_rng(1).integers(0, 256, (256, 256, 1), np.uint8)
  shrunk = np.asarray(resampling.resize(jnp.asarray(noise[None], jnp.float32), (64, 64)))
  pil = np.asarray(Image.fromarray(noise[..., 0]).resize((64, 64), Image.BILINEAR))
  assert abs(shrunk.std() - pil.std()) < 0.5 and shrunk.std() < 35


def test_resize_traces_into_exported_graphs():
  """StableHLO (jax.export) and ONNX (segjax's converter: gathers, products, sums)."""
  onnxruntime = pytest.importorskip("onnxruntime")
  from segjax.data import resampling
  from segjax.export import onnx_graph
  images = np.stack([textured_image(96, 120), textured_image(96, 120, seed=1)])
  resize = lambda x: resampling.resize(x.astype(jnp.float32), (40, 33))
  expected = np.asarray(jax.jit(resize)(images))
  exported = jax.export.export(jax.jit(resize))(jax.ShapeDtypeStruct(images.shape, np.uint8))
  restored = jax.export.deserialize(exported.serialize())
  np.testing.assert_allclose(restored.call(images), expected, atol=1e-4)
  session = onnxruntime.InferenceSession(
      onnx_graph.convert(resize, (96, 120, 3)).SerializeToString(),
      providers=["CPUExecutionProvider"])
  np.testing.assert_allclose(session.run(None, {"images": images})[0], expected, atol=1e-3)


def test_logits_resize_per_image_matches_jax_image_resize():
  """The segmenter's batched resize (each image its own sizes, on a canvas) is the same
  filter, and zero past each image."""
  sources, targets = [(96, 120), (40, 33), (7, 9)], [(24, 37), (80, 20), (7, 9)]
  x = np.zeros((3, 96, 120, 2), np.float32)
  for i, (h, w) in enumerate(sources):
    x[i, :h, :w] = textured_image(h, w, 2, seed=i)
  canvas = (88, 40)
  rows = segmenter_lib._stacked_taps(*np.array(list(zip(sources, targets)))[:, :, 0].T, canvas[0])
  cols = segmenter_lib._stacked_taps(*np.array(list(zip(sources, targets)))[:, :, 1].T, canvas[1])
  out = np.asarray(segmenter_lib._to_canvas(None, jnp.asarray(x), rows, cols))
  for i, ((h, w), (th, tw)) in enumerate(zip(sources, targets)):
    reference = jax.image.resize(x[i, :h, :w], (th, tw, 2), "linear", antialias=True)
    np.testing.assert_allclose(out[i, :th, :tw], reference, atol=2e-3)
    assert not out[i, th:].any() and not out[i, :, tw:].any()


def test_training_and_inference_resize_images_alike():
  """What the network sees at inference for an image at a test size is what training
  makes of it at that size (pipeline's squash, augment's rescale)."""
  from segjax.data import augment, pipeline
  from segjax import config as config_lib
  image = textured_image(60, 90)
  record = {"image": image, "mask": np.zeros((60, 90, 1), np.uint8)}
  for size in [(23, 37), (30, 45), (120, 70)]:
    inference = segmenter_lib.network_inputs([image], np.array([size]), (128, 96))[0]
    np.testing.assert_array_equal(inference[:size[0], :size[1]],
                                  pipeline.resize(record, size)["image"])
    assert not inference[size[0]:].any() and not inference[:, size[1]:].any()
  # keep_ratio training at factor 0.5 with a crop larger than the result: no crop.
  config = config_lib.base_config().dataset
  config.scale_range = (1.0, 1.0)
  view = augment.rescale_crop(record, np.random.default_rng(0), config, (64, 64), 0.5)
  np.testing.assert_array_equal(
      view["image"][:30, :45],
      segmenter_lib.network_inputs([image], np.array([(30, 45)]), (30, 45))[0])


# Inference against plain numpy: a model that a mirror changes, on a textured image.

def np_resize_matrix(source, target):
  """(target, source): the definition, pixel by pixel (triangle of half-width
  max(scale, 1) at (j + 0.5) * scale, weights normalised)."""
  scale = source / target
  support = max(scale, 1.0)
  matrix = np.zeros((target, source))
  for j in range(target):
    for i in range(source):
      matrix[j, i] = max(0.0, 1 - abs(i + 0.5 - (j + 0.5) * scale) / support)
    matrix[j] /= matrix[j].sum()
  return matrix


def np_resize(x, size):
  return np.einsum("yY,xX,YXc->yxc", np_resize_matrix(x.shape[0], size[0]),
                   np_resize_matrix(x.shape[1], size[1]), x)


class Asymmetric(nn.Module):
  """One 3x3 convolution ('SAME'): total stride 1, not mirror-symmetric."""

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Conv(3, (3, 3), padding="SAME")(x)


@pytest.fixture(scope="module")
def asymmetric():
  rng = np.random.default_rng(5)
  kernel = rng.normal(0, 0.5, (3, 3, 3, 3)).astype(np.float32)
  kernel[:, 0] += 1.0  # The left column weighs most: a mirror changes everything.
  bias = rng.normal(0, 0.1, 3).astype(np.float32)
  return Asymmetric(), {"params": {"Conv_0": {"kernel": kernel, "bias": bias}}}


def np_model(variables, pixels, flip=False):
  """The convolution in numpy on uint8-valued pixels ("unit" normalisation, zero padding);
  with `flip`, averaged with the mirrored image's, mirrored back."""
  kernel = variables["params"]["Conv_0"]["kernel"].astype(np.float64)
  bias = variables["params"]["Conv_0"]["bias"]

  def conv(x):
    height, width = x.shape[:2]
    padded = np.pad(x / 127.5 - 1, ((1, 1), (1, 1), (0, 0)))
    return bias + sum(padded[dy:dy + height, dx:dx + width] @ kernel[dy, dx]
                      for dy in range(3) for dx in range(3))
  logits = conv(pixels)
  return (logits + conv(pixels[:, ::-1])[:, ::-1]) / 2 if flip else logits


def np_test_image(image, scale):
  """The image at `scale` of its size, rounded to uint8 values as training stores it."""
  size = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
  return np.clip(np.floor(np_resize(image.astype(np.float64), size) + 0.5), 0, 255)


def segment_one(model, variables, image, **options):
  options = segmenter_lib.Options(resize="keep_ratio", total_stride=1, compile_cost_pixels=1,
                                  **options)
  (group,) = segmenter_lib.Segmenter(model.apply, options, log=lambda _: None).segment(
      variables, [("image", image)])
  height, width = image.shape[:2]
  logits = np.asarray(group.logits)
  assert not logits[0, height:].any() and not logits[0, :, width:].any()
  return logits[0, :height, :width]


# Test sizes differ from numpy's exact rounding by at most a level at some pixels (PIL
# computes in fixed point): a level moves a logit by up to ~0.02 here; a wrong mirror,
# scale or window moves them by about 1.
LOGIT_TOLERANCE = dict(atol=0.06, rtol=0)


def test_flip_against_numpy(asymmetric):
  model, variables = asymmetric
  image = textured_image(21, 34)
  expected = np_model(variables, image.astype(np.float64), flip=True)
  assert np.abs(expected - np_model(variables, image.astype(np.float64))).mean() > 0.3
  np.testing.assert_allclose(segment_one(model, variables, image, flip=True), expected,
                             atol=1e-4)


def test_scales_and_flip_against_numpy(asymmetric):
  """Resize the image to each scale, run, resize the logits back, average: in numpy."""
  model, variables = asymmetric
  image = textured_image(21, 34)
  scales = (0.5, 1.0, 1.5)
  expected = np.mean([np_resize(np_model(variables, np_test_image(image, s), flip=True),
                                image.shape[:2]) for s in scales], axis=0)
  got = segment_one(model, variables, image, scales=scales, flip=True)
  np.testing.assert_allclose(got, expected, **LOGIT_TOLERANCE)
  assert np.abs(got - expected).mean() < 0.01


def test_slide_against_numpy(asymmetric):
  """Overlapping windows, each run alone, their logits averaged where they overlap; at
  two scales, with flip."""
  model, variables = asymmetric
  image = textured_image(13, 18)
  window, step = (8, 8), (4, 6)

  def starts(length, size, stride):
    first = list(range(0, length - size + 1, stride))
    return first + ([length - size] if first[-1] + size < length else [])

  def slide(pixels):
    total, count = np.zeros(pixels.shape[:2] + (3,)), np.zeros(pixels.shape[:2] + (1,))
    for top in starts(pixels.shape[0], window[0], step[0]):
      for left in starts(pixels.shape[1], window[1], step[1]):
        part = (slice(top, top + window[0]), slice(left, left + window[1]))
        total[part] += np_model(variables, pixels[part], flip=True)
        count[part] += 1
    return total / count

  scales = (0.75, 1.0)  # 10x14 and 13x18: 2x2 and 3x3 windows.
  expected = np.mean([np_resize(slide(np_test_image(image, s)), image.shape[:2])
                      for s in scales], axis=0)
  got = segment_one(model, variables, image, mode="slide", image_size=window, stride=step,
                    window_batch_size=3, scales=scales, flip=True)
  np.testing.assert_allclose(got, expected, **LOGIT_TOLERANCE)
  assert np.abs(got - expected).mean() < 0.01


# Mixed sizes at the speed of one size.

def test_mixed_sizes_share_few_shapes_and_small_batches(pooled):
  """11 images of 11 sizes: one or two compiled shapes, batches of 8 and of a power of
  two (never a lone image padded to a full batch), each image as alone."""
  model, variables = pooled
  rng = np.random.default_rng(4)
  sizes = [tuple(int(v) for v in rng.integers(6, 40, 2)) for _ in range(11)]
  images = random_images(sizes, seed=2)
  options = segmenter_lib.Options(mode="whole", resize="keep_ratio", total_stride=4, batch_size=8)
  segmenter = segmenter_lib.Segmenter(model.apply, options, log=lambda _: None)
  groups = list(segmenter.segment(variables, enumerate(images)))
  assert len(segmenter.compiled_shapes) <= 2
  rows = [len(g.keys) for g in groups]
  assert sorted(rows) == [4, 8] and sum(k is None for g in groups for k in g.keys) == 1
  assert segmenter._whole._cache_size() <= 2  # Network compilations: (shape, batch) pairs.
  # Pooled's 4x4 blocks are independent: each image alone, zero-padded, in one call.
  padded = np.zeros((len(images), 40, 40, 3), np.uint8)
  for i, image in enumerate(images):
    padded[i, :image.shape[0], :image.shape[1]] = image
  reference = np.asarray(reference_logits(model, variables, padded))
  for group in groups:
    for i, key in enumerate(group.keys):
      if key is None:
        assert not np.asarray(group.logits[i]).any()
        continue
      h, w = sizes[key]
      np.testing.assert_allclose(group.logits[i, :h, :w], reference[key, :h, :w], rtol=1e-5,
                                 atol=1e-5)
      assert not np.asarray(group.logits[i, h:]).any()
      assert not np.asarray(group.logits[i, :, w:]).any()


def test_plan_buckets_weighs_padding_against_compilations():
  from segjax.inference import planning
  counts = {(288, 384): 40, (256, 384): 5, (384, 288): 30, (128, 128): 1}
  plan = planning.plan_buckets(counts, [], compile_cost=2 ** 21, max_new=8)
  # Landscape and portrait stay apart (merging them pads 70 images by a third), the few
  # others join the shape that holds them.
  assert plan == {(288, 384): (288, 384), (256, 384): (288, 384), (384, 288): (384, 288),
                  (128, 128): (288, 384)}
  # Compilations nearly free: every shape its own.
  assert planning.plan_buckets(counts, [], compile_cost=1, max_new=8) == {s: s for s in counts}
  # A compiled shape that holds an image is used; beyond max_new the fewest pixels go.
  plan = planning.plan_buckets({(200, 300): 3, (40, 900): 1}, [(256, 320)], 2 ** 21, 0)
  assert plan == {(200, 300): (256, 320), (40, 900): None}
  # A compiled shape far larger than the images (memory) only once no new one is allowed.
  big = [(2048, 2048)]
  assert planning.plan_buckets({(64, 64): 3}, big, 2 ** 25, 8) == {(64, 64): (64, 64)}
  assert planning.plan_buckets({(64, 64): 3}, big, 2 ** 25, 0) == {(64, 64): (2048, 2048)}
  assert [planning.batch_size(n, 16) for n in (1, 3, 5, 16, 40)] == [1, 4, 8, 16, 16]
