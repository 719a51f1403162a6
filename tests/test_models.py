"""Every registered model: shapes, gradients, a tiny overfit, errors, parameter counts.

Functional tests run at small width; parameter counts are taken at full width
through `jax.eval_shape` (no memory, no compilation) and compared with counts
derived by hand from each reference architecture. Variables are drawn with numpy
from the shapes `init` declares: compiling the random initialisers of a deep
network costs more CPU time than everything else here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from segjax import models


@dataclasses.dataclass(frozen=True)
class Case:
  name: str
  kwargs: tuple = ()  # (option, value) pairs.
  channels: int = 3
  num_classes: int = 2
  stride: int = 32  # Total stride: H and W must divide by it.
  sizes: tuple = ((32, 32), (64, 64))  # Training size, second forward size.
  # Parameters that get no gradient in training mode by construction (regex over paths).
  dead_in_training: str | None = None
  # The seed's last layer is BatchNorm without scale, then leaky ReLU: in training mode
  # the logits have unit variance, so cross-entropy stays above ~0.4; the pixel error
  # is what halves.
  bounded_logits: bool = False

  def build(self, **overrides):
    return models.build(self.name, self.num_classes, **{**dict(self.kwargs), **overrides})

  def __str__(self):
    return self.name + "".join(f"-{k}={v}" for k, v in self.kwargs if k != "width_multiplier")


# A convolution's bias right before a training-mode BatchNorm is cancelled by it.
_BIAS_BEFORE_BATCHNORM = r"encoder/block\d_conv\d/(pointwise/)?bias"

CASES = [
    Case("segnet", (("width_multiplier", 0.125),), stride=16, sizes=((32, 32), (48, 16))),
    Case("conv_autoencoder", (("width_multiplier", 0.125),), channels=1, num_classes=1,
         stride=64, sizes=((64, 64), (128, 64)), bounded_logits=True),
    Case("fcn8", (("conv_type", "conv"), ("width_multiplier", 1 / 16)),
         dead_in_training=_BIAS_BEFORE_BATCHNORM),
    Case("fcn8", (("conv_type", "ds"), ("width_multiplier", 1 / 16)),
         dead_in_training=_BIAS_BEFORE_BATCHNORM),
    Case("mobilenetv2_unet", (("width_multiplier", 0.25),)),
    Case("fc_densenet", (("blocks", (2, 2, 2, 2)), ("use_bottleneck", True),
                         ("bottleneck_blocks", 2), ("width_multiplier", 0.125))),
    Case("vgg16_skip_fcn", (("width_multiplier", 1 / 16),)),
    Case("unet", (("width_multiplier", 1 / 16),), stride=16, sizes=((32, 32), (48, 16))),
    Case("simple_fcn", (), num_classes=1, stride=1, sizes=((32, 32), (17, 23))),
]


def test_every_registered_model_is_tested():
  # The encoder-decoder models (unet with model.encoder, fpn, deeplabv3plus) are tested
  # against segmentation_models_pytorch in tests/test_decoders.py and test_encoders.py.
  assert {case.name for case in CASES} == set(models.names()) - {"fpn", "deeplabv3plus"}


def _shapes(model, shape):
  keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  return jax.eval_shape(lambda: model.init(keys, jnp.zeros(shape)))


@functools.lru_cache(maxsize=None)
def _full_width_shapes(name, num_classes, options=(), channels=3, size=64):
  """Variable shapes of a full-width model (cached: tracing a DenseNet takes a second)."""
  return _shapes(models.build(name, num_classes, **dict(options)), (1, size, size, channels))


def _path(path) -> str:
  return "/".join(str(getattr(key, "key", key)) for key in path)


def numpy_variables(model, shape, seed=0):
  """Variables of `init`'s shapes: He-normal kernels, unit BatchNorm scale and variance."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = _path(path).rsplit("/", 1)[-1]
    if name == "kernel":
      std = math.sqrt(2.0 / math.prod(leaf.shape[:-1]))
      return jnp.asarray(rng.normal(0.0, std, leaf.shape), leaf.dtype)
    value = 1.0 if name in ("scale", "var") else 0.0
    return jnp.full(leaf.shape, value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, _shapes(model, shape))


def count(tree) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _data(case: Case, num_images=4):
  """Blocky images (8x8 cells) and the mask 'first channel > 0.5' (a per-pixel rule)."""
  height, width = case.sizes[0]
  rng = np.random.default_rng(0)
  cells = rng.uniform(size=(num_images, height // 8, width // 8, case.channels))
  images = np.repeat(np.repeat(cells, 8, axis=1), 8, axis=2).astype(np.float32)
  return jnp.asarray(images), jnp.asarray(images[..., 0] > 0.5, jnp.int32)


def _loss_and_error(logits, mask):
  """Cross-entropy (sigmoid for one channel, else softmax) and the pixel error rate."""
  if logits.shape[-1] == 1:
    loss = optax.sigmoid_binary_cross_entropy(logits[..., 0], mask).mean()
    predicted = logits[..., 0] > 0
  else:
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, mask).mean()
    predicted = jnp.argmax(logits, axis=-1)
  return loss, jnp.mean(predicted != mask)


def _frozen_labels(model, params):
  patterns = getattr(model, "frozen_patterns", ())
  return jax.tree_util.tree_map_with_path(
      lambda path, _: "frozen" if any(re.fullmatch(p, _path(path)) for p in patterns)
      else "trained", params)


@pytest.fixture(scope="module", params=CASES, ids=str)
def trained(request):
  """Trains the small model 40 steps on four images; keeps what the tests check."""
  case = request.param
  model = case.build()
  images, masks = _data(case)
  variables = numpy_variables(model, images.shape)
  params = variables.pop("params")
  frozen = _frozen_labels(model, params)
  optimizer = optax.multi_transform({"trained": optax.adam(3e-3),
                                     "frozen": optax.set_to_zero()}, frozen)

  @jax.jit
  def step(params, state, opt_state, key):
    def loss_fn(params):
      apply = functools.partial(model.apply, {"params": params, **state}, images, train=True,
                                rngs={"dropout": key})
      logits, state_ = apply(mutable=list(state)) if state else (apply(), {})
      loss, error = _loss_and_error(logits, masks)
      return loss, (state_, error, logits.shape)
    (loss, (state, error, shape)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), state, opt_state, (loss, error), grads, shape

  opt_state = optimizer.init(params)
  # Dropout draws from 'rbg' keys: threefry's generator alone takes seconds to compile.
  losses, errors, first_grads, first_params = [], [], None, params
  for index in range(40):
    params, variables, opt_state, (loss, error), grads, shape = step(
        params, variables, opt_state, jax.random.key(index, impl="rbg"))
    losses.append(float(loss))
    errors.append(float(error))
    first_grads = grads if first_grads is None else first_grads
  return dict(case=case, model=model, losses=losses, errors=errors, grads=first_grads,
              logits_shape=shape, first_params=first_params, params=params, frozen=frozen,
              variables={"params": params, **variables})


def test_forward_shapes_on_two_sizes(trained):
  case, model = trained["case"], trained["model"]
  out_channels = case.num_classes
  (h, w), (h2, w2) = case.sizes
  assert trained["logits_shape"] == (4, h, w, out_channels)
  # The second size traced, not compiled: the shapes are what is checked there.
  logits = jax.eval_shape(lambda v, x: model.apply(v, x), trained["variables"],
                          jax.ShapeDtypeStruct((2, h2, w2, case.channels), jnp.float32))
  assert logits.shape == (2, h2, w2, out_channels)
  assert logits.dtype == jnp.float32


def test_gradient_reaches_every_trainable_parameter(trained):
  dead = trained["case"].dead_in_training
  norms = {_path(path): float(np.linalg.norm(np.asarray(g)))
           for path, g in jax.tree_util.tree_leaves_with_path(trained["grads"])}
  unreached = [p for p, norm in norms.items()
               if not norm > 0 and not (dead and re.fullmatch(dead, p))]
  assert not unreached, f"no gradient reaches {unreached}"
  assert all(np.isfinite(list(norms.values())))


def test_overfits_four_images(trained):
  losses, errors = trained["losses"], trained["errors"]
  if trained["case"].bounded_logits:
    assert min(losses[-5:]) < 0.8 * losses[0], losses
    assert min(errors[-5:]) <= 0.5 * errors[0], errors
  else:
    assert min(losses[-5:]) <= 0.5 * losses[0], losses
  # What the model's `frozen_patterns` name (vgg16_skip_fcn's encoder) did not move.
  dead = trained["case"].dead_in_training
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                                       trained["first_params"], trained["params"]))
  labels = jax.tree_util.tree_leaves_with_path(trained["frozen"])
  for (path, label), changed in zip(labels, moved):
    if label == "frozen" or not (dead and re.fullmatch(dead, _path(path))):
      assert changed == (label == "trained"), _path(path)


@pytest.mark.parametrize("case", [c for c in CASES if c.stride > 1], ids=str)
def test_clear_error_when_size_does_not_divide(case):
  h, w = case.sizes[0]
  with pytest.raises(ValueError, match=f"divisible by {case.stride}"):
    _shapes(case.build(), (1, h + case.stride // 2, w, case.channels))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bfloat16_compute_keeps_float32_parameters_and_logits(case):
  model = case.build(dtype=jnp.bfloat16)
  shape = (1, *case.sizes[0], case.channels)
  variables = _shapes(model, shape)
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  logits = jax.eval_shape(lambda v, x: model.apply(v, x), variables,
                          jax.ShapeDtypeStruct(shape, jnp.float32))
  assert logits.dtype == jnp.float32


# ---------------------------------------------------------------------------------
# Parameter counts at full width, derived by hand from the reference architectures.


def conv(k, cin, cout, bias=True):
  return k * k * cin * cout + (cout if bias else 0)


def separable(k, cin, cout):
  """Keras SeparableConv2D: depthwise k x k (no bias), pointwise 1x1 with bias."""
  return k * k * cin + cin * cout + cout


def batchnorm(c):
  return 2 * c  # Scale and offset; the running statistics are not parameters.


VGG16 = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
         (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]


def segnet_count():  # 3 in, 2 classes.
  total, cin = 0, 3
  for w in (64, 128, 256, 512):
    total += conv(3, cin, w) + batchnorm(w) + conv(3, w, w) + batchnorm(w)
    cin = w
  for w in (512, 256, 128, 64):
    total += conv(3, cin, w) + batchnorm(w) + conv(3, w, w) + batchnorm(w)
    cin = w
  return total + conv(3, 64, 2, bias=False) + batchnorm(2)


def conv_autoencoder_count():  # 1 in: six 7x7 kernels, shared by the decoder.
  kernels = conv(7, 1, 64, bias=False) + 5 * conv(7, 64, 64, bias=False)
  offsets_and_biases = 6 * (64 + 64) + 5 * (64 + 64) + (1 + 1)
  return kernels + offsets_and_biases


def fcn8_count(ds, classes=21):  # 3 in.
  layer = separable if ds else conv
  encoder = sum(layer(3, cin, cout) + batchnorm(cout) for cin, cout in VGG16)
  fully_convolutional = layer(7, 512, 4096) + layer(1, 4096, 4096)
  scores = layer(1, 4096, classes) + layer(1, 512, classes) + layer(1, 256, classes)
  upsampling = 2 * conv(4, classes, classes, bias=False) + conv(16, classes, classes, bias=False)
  return encoder + fully_convolutional + scores + upsampling


MOBILENETV2 = [(1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1),
               (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1), (6, 96, 1), (6, 96, 1),
               (6, 96, 1), (6, 160, 2), (6, 160, 1), (6, 160, 1), (6, 320, 1)]


def mobilenetv2_unet_count(kernel=4, classes=3, with_statistics=False):  # 3 in.
  bn = (lambda c: 4 * c) if with_statistics else batchnorm
  total = conv(3, 3, 32, bias=False) + bn(32)
  cin, channels = 32, {}
  for block, (expansion, cout, _) in enumerate(MOBILENETV2):
    hidden = expansion * cin
    if block:
      total += conv(1, cin, hidden, bias=False) + bn(hidden)
      channels[block] = hidden  # Width of block_<i>_expand_relu.
    total += 9 * hidden + bn(hidden) + conv(1, hidden, cout, bias=False)
    total += bn(cout) if block < 16 else 0  # block_16_project is tapped before its BN.
    cin = cout
  for width, skip in zip((512, 256, 128, 64), (13, 6, 3, 1)):
    total += conv(kernel, cin, width, bias=False) + bn(width)
    cin = width + channels[skip]
  return total + conv(3, cin, classes)


def fc_densenet_count(blocks, classes=2, bottleneck=0):  # 3 in.
  def dense_block(cin, layers):
    params = 0
    for _ in range(layers):
      params += batchnorm(cin) + conv(1, cin, 128, bias=False) + batchnorm(128)
      params += conv(3, 128, 32, bias=False)
      cin += 32
    return params, cin

  total, cin = conv(7, 3, 64, bias=False) + batchnorm(64), 64
  skips = []
  for stage, layers in enumerate(blocks):
    if stage:
      total += batchnorm(cin) + conv(1, cin, cin // 2, bias=False)
      cin //= 2
    params, cin = dense_block(cin, layers)
    total += params
    skips.append(cin)
  params, cin = dense_block(cin, bottleneck)
  total += params
  for index, skip in enumerate(reversed(skips[:-1]), start=1):
    total += conv(3, cin, skip // 2)
    params, cin = dense_block(skip // 2 + skip, blocks[-index])
    total += params
  return total + conv(3, cin, 64) + conv(1, 64, classes)


def vgg16_skip_fcn_count(classes=3):
  encoder = sum(conv(3, cin, cout) for cin, cout in VGG16)
  branches = conv(16, 256, classes) + conv(32, 512, classes) + conv(64, 512, classes)
  return encoder + branches


def unet_count():  # 3 in, 2 classes.
  total, cin = 0, 3
  for w in (64, 128, 256, 512, 1024):
    total += conv(3, cin, w) + conv(3, w, w)
    cin = w
  for w in (512, 256, 128, 64):
    total += conv(2, cin, w) + conv(3, 2 * w, w) + conv(3, w, w)
    cin = w
  return total + conv(1, 64, 2)


def simple_fcn_count():  # 3 in, 1 class.
  return conv(5, 3, 10) + conv(5, 10, 12) + conv(5, 12, 8) + conv(5, 8, 1)


FULL_WIDTH_COUNTS = [
    # (model, num_classes, options, input channels, derived count, the count the model's
    # docstring states)
    ("segnet", 2, {}, 3, segnet_count(), 11_737_156),
    ("conv_autoencoder", 1, {}, 1, conv_autoencoder_count(), 1_008_066),
    ("fcn8", 21, {"conv_type": "conv"}, 3, fcn8_count(ds=False), 134_498_207),
    ("fcn8", 21, {"conv_type": "ds"}, 3, fcn8_count(ds=True), 20_826_426),
    ("mobilenetv2_unet", 3, {}, 3, mobilenetv2_unet_count(), 10_091_235),
    ("fc_densenet", 2, {"backbone": "densenet121"}, 3, fc_densenet_count((6, 12, 24, 16)),
     28_644_162),
    ("fc_densenet", 2, {"backbone": "densenet169"}, 3, fc_densenet_count((6, 12, 32, 32)),
     50_360_258),
    ("fc_densenet", 2, {"backbone": "densenet201"}, 3, fc_densenet_count((6, 12, 48, 32)),
     72_241_346),
    ("fc_densenet", 2, {"backbone": "densenet121", "use_bottleneck": True}, 3,
     fc_densenet_count((6, 12, 24, 16), bottleneck=32), None),
    ("vgg16_skip_fcn", 3, {}, 3, vgg16_skip_fcn_count(), 22_775_625),
    ("unet", 2, {}, 3, unet_count(), 31_031_810),
    ("simple_fcn", 1, {}, 3, simple_fcn_count(), 6_381),
]


@pytest.mark.parametrize("name,classes,options,channels,derived,stated", FULL_WIDTH_COUNTS,
                         ids=lambda v: v if isinstance(v, str) else None)
def test_parameter_count_at_full_width(name, classes, options, channels, derived, stated):
  variables = _full_width_shapes(name, classes, tuple(options.items()), channels)
  assert count(variables["params"]) == derived
  if stated is not None:
    model_doc = sys.modules[type(models.build(name, classes)).__module__].__doc__
    assert derived == stated and f"{stated:,}" in model_doc


def test_mobilenetv2_unet_matches_the_tensorflow_tutorial_total():
  """The TF segmentation tutorial (3x3 upsampling, 3 classes) reports 6,504,227 parameters,
  BatchNorm statistics included."""
  variables = _shapes(models.build("mobilenetv2_unet", 3, upsample_kernel=3), (1, 128, 128, 3))
  total = count(variables["params"]) + count(variables["batch_stats"])
  assert total == mobilenetv2_unet_count(kernel=3, with_statistics=True) == 6_504_227


@pytest.mark.parametrize("backbone,keras_total", [("densenet121", 7_037_504),
                                                  ("densenet169", 12_642_880),
                                                  ("densenet201", 18_321_984)])
def test_densenet_encoder_matches_keras_applications(backbone, keras_total):
  """Keras' notop DenseNets (statistics included) end with a BatchNorm `bn` the encoder omits."""
  variables = _full_width_shapes("fc_densenet", 2, (("backbone", backbone),))
  encoder = count(variables["params"]["encoder"]) + count(variables["batch_stats"]["encoder"])
  last_channels = {"densenet121": 1024, "densenet169": 1664, "densenet201": 1920}[backbone]
  assert encoder + 4 * last_channels == keras_total


def test_vgg16_encoder_matches_keras_applications():
  variables = _full_width_shapes("vgg16_skip_fcn", 3)
  assert count(variables["params"]["encoder"]) == 14_714_688


def test_parameters_have_readable_paths():
  variables = _shapes(models.build("vgg16_skip_fcn", 3), (1, 32, 32, 3))
  paths = {_path(p) for p, _ in jax.tree_util.tree_leaves_with_path(variables["params"])}
  assert "encoder/block1_conv1/kernel" in paths
  assert "encoder/block5_conv3/bias" in paths
  assert {p for p in paths if not p.startswith("encoder/")} == {
      f"upscore_pool{level}/{w}" for level in (3, 4, 5) for w in ("kernel", "bias")}


def test_conv_autoencoder_decoder_reuses_encoder_kernels():
  model = models.build("conv_autoencoder", 1, width_multiplier=0.125)
  params = _shapes(model, (1, 64, 64, 1))["params"]
  kernels = [_path(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)
             if _path(p).endswith("kernel")]
  assert sorted(kernels) == sorted(f"conv_{m}_{i}/kernel" for m in (1, 2, 3) for i in (1, 2))
  assert set(params["deconv_1_1"]) == {"bn", "bias"}  # Own offset and bias, no kernel.


def test_conv_autoencoder_free_logits_option():
  """normalize_output=False: the last layer is the tied transposed convolution plus a
  bias, so its output is that affine map of the previous layer's (not BatchNorm'd)."""
  model = models.build("conv_autoencoder", 1, width_multiplier=0.125, normalize_output=False)
  x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 1)), jnp.float32)
  variables = jax.jit(model.init)(jax.random.key(0), x)
  assert set(variables["params"]["deconv_1_1"]) == {"bias"}
  assert "deconv_1_1" not in variables["batch_stats"]
  shifted = jax.tree.map(lambda a: a, variables)
  shifted["params"]["deconv_1_1"]["bias"] = variables["params"]["deconv_1_1"]["bias"] + 3.0
  apply = jax.jit(model.apply)
  np.testing.assert_allclose(apply(shifted, x) - apply(variables, x), 3.0, rtol=1e-5)


@pytest.mark.parametrize("name, kwargs", [
    ("segnet", {}), ("fcn8", {"conv_type": "ds"}), ("mobilenetv2_unet", {}),
    ("fc_densenet", {"blocks": (1, 1, 1, 1), "bottleneck_blocks": 1, "use_bottleneck": True}),
    ("conv_autoencoder", {})])
def test_bn_momentum_reaches_every_batchnorm(name, kwargs):
  """Every BatchNorm that keeps statistics is called with the configured momentum.

  Checked on the traced training forward (no compilation): each BatchNorm call
  is intercepted, and the set of calls must be the set of `batch_stats` entries.
  """
  from flax import linen as nn
  channels, size = (1, 64) if name == "conv_autoencoder" else (3, 32)
  num_classes = 1 if name == "conv_autoencoder" else 3
  x = jnp.zeros((2, size, size, channels))
  momenta = {}

  def record(call, args, kwargs, context):
    if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
      momenta["/".join(context.module.path)] = context.module.momentum
    return call(*args, **kwargs)

  model = models.build(name, num_classes, width_multiplier=0.125, bn_momentum=0.25, **kwargs)
  keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  with nn.intercept_methods(record):
    variables = jax.eval_shape(lambda: model.init(keys, x, train=True))
  with_statistics = {_path(path[:-1])
                     for path, _ in jax.tree_util.tree_leaves_with_path(variables["batch_stats"])}
  assert with_statistics and set(momenta) == with_statistics
  assert set(momenta.values()) == {0.25}, momenta


def test_conv_autoencoder_rejects_multiclass():
  with pytest.raises(ValueError, match="binary by design"):
    _shapes(models.build("conv_autoencoder", 5), (1, 64, 64, 1))


def test_per_image_standardization_matches_tensorflow_formula():
  from segjax.models.conv_autoencoder import per_image_standardization
  x = np.random.default_rng(0).uniform(0, 255, size=(2, 8, 8, 1)).astype(np.float32)
  x[1] = 7.0  # Constant image: std 0, TF divides by 1 / sqrt(64).
  got = np.asarray(per_image_standardization(jnp.asarray(x)))
  expected0 = (x[0] - x[0].mean()) / max(x[0].std(), 1 / 8)
  np.testing.assert_allclose(got[0], expected0, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got[1], 0.0)


def test_fcn8_bilinear_initialisation():
  from segjax.models.fcn8 import bilinear_init
  kernel = np.asarray(bilinear_init(None, (4, 4, 2, 2)))
  taps = np.array([0.25, 0.75, 0.75, 0.25])
  np.testing.assert_allclose(kernel[:, :, 0, 0], np.outer(taps, taps))
  np.testing.assert_allclose(kernel[:, :, 0, 1], 0.0)
  # A constant image stays constant (away from the border) after 2x upsampling.
  from segjax.models import layers
  up = layers.conv_transpose(jnp.ones((1, 4, 4, 2)), jnp.asarray(kernel), (2, 2), "SAME")
  np.testing.assert_allclose(up[0, 2:-2, 2:-2], 1.0, rtol=1e-6)


def test_unknown_options_are_rejected():
  with pytest.raises(ValueError, match="conv_type"):
    _shapes(models.build("fcn8", 2, conv_type="depthwise"), (1, 32, 32, 3))
  with pytest.raises(ValueError, match="backbone"):
    _shapes(models.build("fc_densenet", 2, backbone="densenet100"), (1, 32, 32, 3))
