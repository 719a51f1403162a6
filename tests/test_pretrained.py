"""ImageNet encoders from Keras Applications HDF5 files.

The files here are written with h5py in the layout Keras' `save_weights` produces
(root attribute `layer_names`, per layer a group with attribute `weight_names`
and datasets at `<layer>/<weight name>`, e.g. `block1_conv1/block1_conv1/kernel:0`),
with the shapes of the Keras architectures, derived here independently. Layers
under test hold random values; the others are left unwritten (HDF5 reads them as
zeros), which keeps the files small.
"""

from __future__ import annotations

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax import models
from segjax.models import densenet, mobilenetv2, pretrained, vgg


def write_keras_h5(path, layers, values=None, seed=0):
  """Writes a Keras weight file. `layers`: [(layer name, [(weight name, shape)])];
  weights of layers named in `values` get random data (BatchNorm variances positive)."""
  rng = np.random.default_rng(seed)
  values = values or set()
  with h5py.File(path, "w") as f:
    f.attrs["layer_names"] = [name.encode("utf8") for name, _ in layers]
    f.attrs["backend"] = b"tensorflow"
    f.attrs["keras_version"] = b"2.2.4"
    for name, weights in layers:
      group = f.require_group(name)
      group.attrs["weight_names"] = [w.encode("utf8") for w, _ in weights]
      for weight, shape in weights:
        if name not in values:
          group.create_dataset(weight, shape, dtype="float32")  # Unwritten: reads zeros.
        elif weight.endswith("moving_variance:0"):
          group.create_dataset(weight, data=rng.uniform(0.5, 1.5, shape).astype(np.float32))
        else:
          group.create_dataset(weight, data=rng.normal(0, 0.5, shape).astype(np.float32))
  return path


def _conv(name, k, cin, cout, bias=True, depthwise=False):
  if depthwise:
    return name, [(f"{name}/depthwise_kernel:0", (k, k, cin, 1))]
  weights = [(f"{name}/kernel:0", (k, k, cin, cout))]
  return name, weights + ([(f"{name}/bias:0", (cout,))] if bias else [])


def _bn(name, c):
  return name, [(f"{name}/{w}:0", (c,)) for w in ("gamma", "beta", "moving_mean",
                                                  "moving_variance")]


def vgg16_layout():
  layers, cin = [("input_1", [])], 3
  for block, (cout, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
    for index in range(1, convs + 1):
      layers.append(_conv(f"block{block}_conv{index}", 3, cin, cout))
      cin = cout
    layers.append((f"block{block}_pool", []))
  return layers


def mobilenetv2_layout():
  """keras.applications.MobileNetV2(alpha=1.0, include_top=False), weighted layers."""
  layers = [_conv("Conv1", 3, 3, 32, bias=False), _bn("bn_Conv1", 32)]
  table = [(1, 16), (6, 24), (6, 24), (6, 32), (6, 32), (6, 32), (6, 64), (6, 64), (6, 64),
           (6, 64), (6, 96), (6, 96), (6, 96), (6, 160), (6, 160), (6, 160), (6, 320)]
  cin = 32
  for block, (expansion, cout) in enumerate(table):
    prefix = f"block_{block}_" if block else "expanded_conv_"
    hidden = expansion * cin
    if block:
      layers += [_conv(prefix + "expand", 1, cin, hidden, bias=False),
                 _bn(prefix + "expand_BN", hidden)]
    layers += [_conv(prefix + "depthwise", 3, hidden, hidden, depthwise=True),
               _bn(prefix + "depthwise_BN", hidden),
               _conv(prefix + "project", 1, hidden, cout, bias=False),
               _bn(prefix + "project_BN", cout)]
    cin = cout
  return layers + [_conv("Conv_1", 1, 320, 1280, bias=False), _bn("Conv_1_bn", 1280)]


def densenet_layout(blocks, stem_separator="/"):
  """keras.applications.DenseNet*(include_top=False); the 2017 files name the stem
  `conv1/conv`, `conv1/bn`."""
  layers = [_conv(f"conv1{stem_separator}conv", 7, 3, 64, bias=False),
            _bn(f"conv1{stem_separator}bn", 64)]
  channels = 64
  for stage, num_layers in enumerate(blocks, start=2):
    if stage > 2:
      layers += [_bn(f"pool{stage - 1}_bn", channels),
                 _conv(f"pool{stage - 1}_conv", 1, channels, channels // 2, bias=False)]
      channels //= 2
    for index in range(1, num_layers + 1):
      prefix = f"conv{stage}_block{index}"
      layers += [_bn(f"{prefix}_0_bn", channels), _conv(f"{prefix}_1_conv", 1, channels, 128,
                                                        bias=False),
                 _bn(f"{prefix}_1_bn", 128), _conv(f"{prefix}_2_conv", 3, 128, 32, bias=False)]
      channels += 32
  return layers + [_bn("bn", channels)]


# --- numpy references ------------------------------------------------------------


def np_conv(x, kernel, stride=1, padding=((0, 0), (0, 0))):
  """NHWC x HWIO cross-correlation with explicit zero padding."""
  x = np.pad(x, ((0, 0), *padding, (0, 0)))
  kh, kw = kernel.shape[:2]
  out_h = (x.shape[1] - kh) // stride + 1
  out_w = (x.shape[2] - kw) // stride + 1
  out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[3]), np.float64)
  for i in range(kh):
    for j in range(kw):
      patch = x[:, i:i + stride * out_h:stride, j:j + stride * out_w:stride, :]
      out += patch @ kernel[i, j]
  return out


def np_depthwise(x, kernel, stride=1, padding=((1, 1), (1, 1))):
  """Keras DepthwiseConv2D, kernel (K, K, C, 1)."""
  x = np.pad(x, ((0, 0), *padding, (0, 0)))
  k = kernel.shape[0]
  out_h = (x.shape[1] - k) // stride + 1
  out_w = (x.shape[2] - k) // stride + 1
  out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]))
  for i in range(k):
    for j in range(k):
      out += x[:, i:i + stride * out_h:stride, j:j + stride * out_w:stride, :] * kernel[i, j, :, 0]
  return out


def np_batchnorm(x, gamma, beta, mean, var, eps):
  return gamma * (x - mean) / np.sqrt(var + eps) + beta


def np_max_pool(x, k, stride, pad):
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))  # Zeros, as Keras' ZeroPadding2D.
  out_h = (x.shape[1] - k) // stride + 1
  out_w = (x.shape[2] - k) // stride + 1
  windows = [x[:, i:i + stride * out_h:stride, j:j + stride * out_w:stride]
             for i in range(k) for j in range(k)]
  return np.max(windows, axis=0)


# --- helpers ---------------------------------------------------------------------


def _shapes(model, shape):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))


def _captured(model, variables, x, names):
  """Outputs of the named submodules of `model`."""
  _, state = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
  return {name: np.asarray(state["intermediates"][name]["__call__"][0]) for name in names}


@pytest.fixture
def cache(tmp_path, monkeypatch):
  """An empty cache directory and no way to download (an address that refuses)."""
  monkeypatch.setattr(pretrained, "KERAS_BASE_URL", "http://127.0.0.1:9/")
  return tmp_path / "cache"


def _file(tmp_path, encoder, layout, values):
  return write_keras_h5(tmp_path / pretrained.WEIGHT_FILES[encoder].filename, layout, values)


# --- tests -----------------------------------------------------------------------


def test_vgg16_layers_load_and_compute_as_in_keras(tmp_path):
  path = _file(tmp_path, "vgg16", vgg16_layout(), {"block1_conv1", "block1_conv2"})
  keras = pretrained.read_keras_weights(path)
  model = models.build("vgg16_skip_fcn", 3)
  x = np.random.default_rng(1).normal(size=(1, 32, 32, 3)).astype(np.float32)
  variables = pretrained.load_imagenet(model, _shapes(model, x.shape), path=path)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, _shapes(model, x.shape))
  np.testing.assert_array_equal(variables["params"]["encoder"]["block1_conv2"]["kernel"],
                                keras["block1_conv2"][0])
  # Untouched decoder: still the abstract shapes given in.
  assert isinstance(variables["params"]["upscore_pool3"]["kernel"], jax.ShapeDtypeStruct)

  got = _captured(vgg.VGG16Encoder(), {"params": variables["params"]["encoder"]}, x,
                  ["block1_conv1", "block1_conv2"])
  kernel1, bias1 = keras["block1_conv1"]
  kernel2, bias2 = keras["block1_conv2"]
  conv1 = np_conv(x, kernel1, padding=((1, 1), (1, 1))) + bias1
  conv2 = np_conv(np.maximum(conv1, 0), kernel2, padding=((1, 1), (1, 1))) + bias2
  np.testing.assert_allclose(got["block1_conv1"], conv1, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(got["block1_conv2"], conv2, rtol=1e-4, atol=1e-3)


def test_fcn8_loads_vgg16_and_keeps_its_batchnorms(tmp_path):
  path = _file(tmp_path, "vgg16", vgg16_layout(), {"block5_conv3"})
  model = models.build("fcn8", 21)
  shapes = _shapes(model, (1, 32, 32, 3))
  variables = pretrained.load_imagenet(model, shapes, path=path)
  encoder = variables["params"]["encoder"]
  np.testing.assert_array_equal(encoder["block5_conv3"]["bias"],
                                pretrained.read_keras_weights(path)["block5_conv3"][1])
  assert encoder["block5_conv3_bn"] is shapes["params"]["encoder"]["block5_conv3_bn"]
  with pytest.raises(ValueError, match="no ImageNet encoder"):
    pretrained.load_imagenet(models.build("fcn8", 21, conv_type="ds"), {}, path=path)


def test_mobilenetv2_layers_load_and_compute_as_in_keras(tmp_path):
  tested = {"Conv1", "bn_Conv1", "expanded_conv_depthwise", "expanded_conv_depthwise_BN",
            "expanded_conv_project", "expanded_conv_project_BN", "block_1_expand_BN",
            "block_1_depthwise"}
  path = _file(tmp_path, "mobilenetv2", mobilenetv2_layout(), tested)
  keras = pretrained.read_keras_weights(path)
  model = models.build("mobilenetv2_unet", 3)
  x = np.random.default_rng(2).normal(size=(1, 32, 32, 3)).astype(np.float32)
  variables = pretrained.load_imagenet(model, _shapes(model, x.shape), path=path)
  encoder_variables = {c: variables[c]["encoder"] for c in ("params", "batch_stats")}
  names = ["expanded_conv_project_BN", "block_1_expand_BN", "block_1_depthwise"]
  got = _captured(mobilenetv2.MobileNetV2Encoder(["block_1_depthwise_relu"]),
                  encoder_variables, x, names)

  bn = lambda h, layer: np_batchnorm(h, *keras[layer], eps=1e-3)
  relu6 = lambda h: np.clip(h, 0, 6)
  # Keras: Conv1 'same' at stride 2 pads (0, 1); depthwise 'same' at stride 1 pads (1, 1).
  h = relu6(bn(np_conv(x, keras["Conv1"][0], 2, ((0, 1), (0, 1))), "bn_Conv1"))
  h = relu6(bn(np_depthwise(h, keras["expanded_conv_depthwise"][0]),
               "expanded_conv_depthwise_BN"))
  h = bn(np_conv(h, keras["expanded_conv_project"][0]), "expanded_conv_project_BN")
  np.testing.assert_allclose(got["expanded_conv_project_BN"], h, rtol=1e-4, atol=1e-4)
  # Stride-2 depthwise: ZeroPadding2D(correct_pad) = ((0, 1), (0, 1)), then 'valid'.
  h = relu6(got["block_1_expand_BN"])
  h = np_depthwise(h, keras["block_1_depthwise"][0], 2, ((0, 1), (0, 1)))
  np.testing.assert_allclose(got["block_1_depthwise"], h, rtol=1e-4, atol=1e-4)


def test_densenet_layers_load_and_compute_as_in_keras(tmp_path):
  """On Keras' `DenseNet(blocks=[1, 1, 1, 1])` (same names, short to run); the real
  backbones' layouts are checked below."""
  tested = {"conv1/conv", "conv1/bn", "conv2_block1_0_bn"}
  path = _file(tmp_path, "densenet121", densenet_layout((1, 1, 1, 1)), tested)
  keras = pretrained.read_keras_weights(path)
  model = models.build("fc_densenet", 2, blocks=(1, 1, 1, 1))
  x = np.random.default_rng(3).normal(size=(1, 32, 32, 3)).astype(np.float32)
  variables = pretrained.load_imagenet_encoder(_shapes(model, x.shape), "densenet121", path)
  encoder_variables = {c: variables[c]["encoder"] for c in ("params", "batch_stats")}
  got = _captured(densenet.DenseNetEncoder((1, 1, 1, 1)), encoder_variables, x,
                  ["conv1_bn", "conv2_block1_0_bn"])

  bn = lambda h, layer: np_batchnorm(h, *keras[layer], eps=1.001e-5)
  # Keras: ZeroPadding2D(3), 7x7 stride 2 'valid'; ZeroPadding2D(1), 3x3 stride-2 max-pool.
  h = bn(np_conv(x, keras["conv1/conv"][0], 2, ((3, 3), (3, 3))), "conv1/bn")
  np.testing.assert_allclose(got["conv1_bn"], h, rtol=1e-4, atol=1e-4)
  h = bn(np_max_pool(np.maximum(h, 0), 3, 2, 1), "conv2_block1_0_bn")
  np.testing.assert_allclose(got["conv2_block1_0_bn"], h, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backbone,blocks,stem_separator", [
    ("densenet121", (6, 12, 24, 16), "/"),  # The names of the published files.
    ("densenet169", (6, 12, 32, 32), "_"),  # The names of current Keras.
    ("densenet201", (6, 12, 48, 32), "/")])
def test_every_densenet_backbone_matches_its_keras_layout(tmp_path, backbone, blocks,
                                                          stem_separator):
  path = _file(tmp_path, backbone, densenet_layout(blocks, stem_separator), set())
  model = models.build("fc_densenet", 2, backbone=backbone)
  shapes = _shapes(model, (1, 32, 32, 3))
  variables = pretrained.load_imagenet(model, shapes, path=path)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, shapes)


def test_grayscale_input_sums_the_first_kernel(tmp_path):
  path = _file(tmp_path, "vgg16", vgg16_layout(), {"block1_conv1"})
  kernel, bias = pretrained.read_keras_weights(path)["block1_conv1"]
  model = models.build("vgg16_skip_fcn", 3)
  variables = pretrained.load_imagenet(model, _shapes(model, (1, 32, 32, 1)), path=path)
  converted = variables["params"]["encoder"]["block1_conv1"]
  np.testing.assert_allclose(converted["kernel"], kernel.sum(axis=2, keepdims=True), rtol=1e-6)
  # A gray image through the converted kernel = the same image as RGB through the original.
  gray = np.random.default_rng(4).uniform(size=(1, 8, 8, 1)).astype(np.float32)
  one = np_conv(gray, np.asarray(converted["kernel"]), padding=((1, 1), (1, 1)))
  rgb = np_conv(np.repeat(gray, 3, axis=-1), kernel, padding=((1, 1), (1, 1)))
  np.testing.assert_allclose(one, rgb, rtol=1e-4, atol=1e-4)


def test_old_keras_weight_names_load_by_position(tmp_path):
  """The 2016 VGG16 files name weights `block1_conv1_W_1:0`, `block1_conv1_b_1:0`."""
  layout = [(name, [(w.replace("/kernel:0", "_W_1:0").replace("/bias:0", "_b_1:0"), shape)
                    for w, shape in weights]) for name, weights in vgg16_layout()]
  path = _file(tmp_path, "vgg16", layout, {"block3_conv2"})
  model = models.build("vgg16_skip_fcn", 3)
  variables = pretrained.load_imagenet(model, _shapes(model, (1, 32, 32, 3)), path=path)
  with h5py.File(path) as f:
    expected = np.asarray(f["block3_conv2"]["block3_conv2_W_1:0"])
  np.testing.assert_array_equal(variables["params"]["encoder"]["block3_conv2"]["kernel"],
                                expected)


def test_width_mismatch_is_a_clear_error(tmp_path):
  path = _file(tmp_path, "vgg16", vgg16_layout(), set())
  model = models.build("vgg16_skip_fcn", 3, width_multiplier=0.5)
  with pytest.raises(ValueError, match="block1_conv1.*width_multiplier 1.0"):
    pretrained.load_imagenet(model, _shapes(model, (1, 32, 32, 3)), path=path)


def test_missing_layer_is_a_clear_error(tmp_path):
  path = _file(tmp_path, "vgg16", vgg16_layout()[:-2], set())  # No block5_conv3.
  model = models.build("vgg16_skip_fcn", 3)
  with pytest.raises(ValueError, match="no layer 'block5_conv3'"):
    pretrained.load_imagenet(model, _shapes(model, (1, 32, 32, 3)), path=path)


def test_no_file_and_no_network_says_which_file_to_put_where(cache):
  model = models.build("mobilenetv2_unet", 3)
  filename = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
  with pytest.raises(FileNotFoundError) as error:
    pretrained.load_imagenet(model, _shapes(model, (1, 32, 32, 3)), cache_dir=cache)
  message = str(error.value)
  assert str(cache / filename) in message
  assert "config.model.pretrained_path" in message
  assert pretrained.WEIGHT_FILES["mobilenetv2"].url in message
  assert not list(cache.glob("*.part"))


def test_missing_explicit_path_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="pretrained_path.*does not exist"):
    pretrained.weights_file("vgg16", path=tmp_path / "nothing.h5")


def test_cached_file_is_checked_against_the_published_md5(tmp_path, cache, monkeypatch):
  cache.mkdir()
  spec = pretrained.WEIGHT_FILES["vgg16"]
  assert spec.md5 == "6d6bbae143d832006294945121d1f1fc"  # keras.applications.vgg16
  path = write_keras_h5(cache / spec.filename, vgg16_layout(), {"block1_conv1"})
  with pytest.raises(ValueError, match=f"MD5 .* but Keras publishes {spec.md5}"):
    pretrained.weights_file("vgg16", cache_dir=cache)
  # The same file passes when its digest is the published one.
  monkeypatch.setitem(pretrained.WEIGHT_FILES, "vgg16",
                      pretrained.KerasWeightsFile(spec.filename, spec.folder,
                                                  pretrained.md5_of(path)))
  assert pretrained.weights_file("vgg16", cache_dir=cache) == path
  model = models.build("vgg16_skip_fcn", 3)
  variables = pretrained.load_imagenet(model, _shapes(model, (1, 32, 32, 3)), cache_dir=cache)
  assert variables["params"]["encoder"]["block1_conv1"]["kernel"].shape == (3, 3, 3, 64)


def test_every_imagenet_file_has_its_canonical_address():
  for encoder, spec in pretrained.WEIGHT_FILES.items():
    assert spec.url.startswith("https://storage.googleapis.com/tensorflow/keras-applications/")
    assert spec.url.endswith("/" + spec.filename)
  assert pretrained.WEIGHT_FILES["mobilenetv2"].md5 is None  # Keras publishes no hash.
  expected = {"vgg16_skip_fcn": "vgg16", "mobilenetv2_unet": "mobilenetv2"}
  for name, encoder in expected.items():
    assert models.build(name, 2).imagenet_encoder == encoder
  assert models.build("fc_densenet", 2, backbone="densenet169").imagenet_encoder == "densenet169"
  with pytest.raises(ValueError, match="no ImageNet encoder"):
    pretrained.load_imagenet(models.build("unet", 2), {})


# Keras Applications' preprocess_input, written out (keras/src/applications/imagenet_utils.py).
def keras_preprocess(image: np.ndarray, mode: str) -> np.ndarray:
  x = image.astype(np.float64)
  if mode == "tf":
    return x / 127.5 - 1.0
  if mode == "torch":
    return (x / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  return x[..., ::-1] - np.array([103.939, 116.779, 123.68])  # caffe: RGB -> BGR, mean.


@pytest.mark.parametrize("model_name, encoder, keras_mode, layer, stride, padding", [
    ("vgg16_skip_fcn", "vgg16", "caffe", "block1_conv1", 1, ((1, 1), (1, 1))),
    ("mobilenetv2_unet", "mobilenetv2", "tf", "Conv1", 2, ((0, 1), (0, 1))),
    ("fc_densenet", "densenet121", "torch", "conv1/conv", 2, ((3, 3), (3, 3))),
])
def test_pretrained_input_is_normalised_as_keras_expects(tmp_path, model_name, encoder,
                                                         keras_mode, layer, stride, padding):
  """uint8 image -> the run's normalisation -> the first converted layer equals Keras'
  preprocess_input of the same image through that layer."""
  from segjax import config as config_lib
  from segjax.data import normalize
  layouts = {"vgg16": vgg16_layout, "mobilenetv2": mobilenetv2_layout,
             "densenet121": lambda: densenet_layout((1, 1, 1, 1))}
  path = _file(tmp_path, encoder, layouts[encoder](), {layer})
  kernel = pretrained.read_keras_weights(path)[layer]
  options = {"blocks": (1, 1, 1, 1)} if encoder == "densenet121" else {}
  model = models.build(model_name, 2, **options)
  config = config_lib.base_config()
  config.model.pretrained = "imagenet"
  mode = normalize.mode_for(config, models.build(model_name, 2))  # The ImageNet backbone.
  image = np.random.default_rng(4).integers(0, 256, (1, 32, 32, 3), np.uint8)
  x = np.asarray(normalize.normalize_images(jnp.asarray(image), mode))
  np.testing.assert_allclose(x, keras_preprocess(image, keras_mode), rtol=1e-5, atol=1e-4)

  variables = pretrained.load_imagenet_encoder(_shapes(model, image.shape), encoder, path)
  encoder_module = {"vgg16": lambda: vgg.VGG16Encoder(),
                    "mobilenetv2": lambda: mobilenetv2.MobileNetV2Encoder(
                        ["block_1_depthwise_relu"]),
                    "densenet121": lambda: densenet.DenseNetEncoder((1, 1, 1, 1))}[encoder]()
  name = layer.replace("/", "_")
  encoder_variables = {c: v["encoder"] for c, v in variables.items() if "encoder" in v}
  got = _captured(encoder_module, encoder_variables, x, [name])[name]
  expected = np_conv(keras_preprocess(image, keras_mode), kernel[0], stride, padding)
  if len(kernel) > 1:
    expected = expected + kernel[1]
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-2)

  config.dataset.normalization = "unit" if keras_mode != "tf" else "imagenet"
  with pytest.raises(ValueError, match=f"expect {mode!r} input: set dataset.normalization"):
    normalize.mode_for(config, models.build(model_name, 2))
  config.model.pretrained = ""
  assert normalize.mode_for(config, model) == config.dataset.normalization


def test_caffe_mode_on_gray_and_unknown_mode():
  from segjax.data import normalize
  gray = jnp.full((1, 2, 2, 1), 200, jnp.uint8)
  np.testing.assert_allclose(normalize.normalize_images(gray, "caffe"),
                             200 - (103.939 + 116.779 + 123.68) / 3, rtol=1e-6)
  with pytest.raises(ValueError, match="'' \\(automatic\\)"):
    normalize.normalize_images(gray, "")
