"""Every registered model exported to StableHLO and ONNX gives segjax's own prediction.

Models at small width with drawn variables (no training); each export is run
from its serialised form (StableHLO deserialised, ONNX in onnxruntime) and
compared with the jitted `segjax.export.function` prediction it was made from.
"""

from __future__ import annotations

import numpy as np
import pytest

from segjax import models
from segjax.export import function, onnx_graph, stablehlo
from test_models import CASES, Case, numpy_variables

import jax
from jax import export as jax_export

onnxruntime = pytest.importorskip("onnxruntime")

# Compiling without LLVM's optimisations is several times faster for these small
# programs; the reference and the StableHLO file compile alike.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


# The encoder-decoder models on the encoders of the configs (EfficientNet-Lite0: depthwise
# convolutions, ReLU6) and a dilated ResNet (DeepLabV3+ at output stride 16); their
# training is tested against segmentation_models_pytorch in test_decoders/test_encoders.
ENCODER_CASES = [Case("unet", (("encoder", "efficientnet-lite0"),)),
                 Case("fpn", (("encoder", "efficientnet-lite0"),)),
                 Case("deeplabv3plus", (("encoder", "resnet18"),), stride=16,
                      sizes=((32, 32), (48, 48)))]
EXPORT_CASES = CASES + ENCODER_CASES


def test_every_registered_model_is_exported():
  assert {case.name for case in EXPORT_CASES} == set(models.names())
  assert {case.build().total_stride for case in ENCODER_CASES} == {32, 16}


def _onnx_run(model, images):
  session = onnxruntime.InferenceSession(model.SerializeToString(),
                                         providers=["CPUExecutionProvider"])
  return session.run(None, {"images": images})[0]


# Fewer dense layers than test_models' FC-DenseNet: the same operations, half the compile time.
SMALLER = {"fc_densenet": {"blocks": (1, 1, 1, 1), "bottleneck_blocks": 1}}


@pytest.mark.parametrize("case", EXPORT_CASES, ids=str)
def test_exports_match_segjax_prediction(case):
  height, width = case.sizes[0]
  model = case.build(**SMALLER.get(case.name, {}))
  variables = numpy_variables(model, (1, height, width, case.channels))
  # per_image normalisation and flip averaging: the most of the run's preprocessing inside.
  flip = case.name == "simple_fcn"
  predict = function.inference_function(model.apply, variables, "per_image", "probabilities",
                                        flip=flip)
  images = np.random.default_rng(0).integers(0, 256, (3, height, width, case.channels),
                                             dtype=np.uint8)
  expected = np.asarray(jax.jit(predict, compiler_options=FAST_COMPILE)(images))

  # The stride found is the model's total stride (for SegNet: half of it does not trace;
  # the search itself is tested below).
  strides = (case.stride // 2, case.stride) if case.name == "segnet" else (case.stride,)
  exported, rule = stablehlo.export(predict, (height, width), case.channels, strides=strides)
  assert rule == {"multiple_of": case.stride}
  restored = jax_export.deserialize(exported.serialize())
  from_stablehlo = np.asarray(jax.jit(restored.call, compiler_options=FAST_COMPILE)(images))
  from_onnx = _onnx_run(onnx_graph.convert(predict, (height, width, case.channels)), images)

  for produced in (from_stablehlo, from_onnx):
    assert produced.shape == expected.shape == (3, height, width, max(case.num_classes, 2))
    np.testing.assert_allclose(produced, expected, atol=1e-4, rtol=0)
    assert np.mean(produced.argmax(-1) == expected.argmax(-1)) >= 0.999


def _pool_then_fixed_reshape(images):
  """A function that takes 8x8 images only (a reshape to a fixed size)."""
  x = images.astype(jax.numpy.float32)
  return x.reshape(x.shape[0], 8, 8, 1) * jax.numpy.ones((1, 1, 1, 2))


def test_size_rule_searches_strides_and_falls_back_to_the_training_size():
  pooled = lambda x: jax.numpy.repeat(jax.numpy.repeat(
      x[:, ::4, ::4].astype(jax.numpy.float32), 4, axis=1), 4, axis=2)
  _, rule = stablehlo.export(pooled, (16, 16), 1)
  assert rule == {"multiple_of": 4}
  exported, rule = stablehlo.export(_pool_then_fixed_reshape, (8, 8), 1)
  assert list(rule) == ["fixed", "reason"] and rule["fixed"] == [8, 8]
  assert exported.in_avals[0].shape[1:] == (8, 8, 1)  # Batch still symbolic.
  images = np.arange(2 * 64, dtype=np.uint8).reshape(2, 8, 8, 1)
  np.testing.assert_array_equal(exported.call(images), _pool_then_fixed_reshape(images))


def test_onnx_names_an_unsupported_operation():
  with pytest.raises(onnx_graph.UnsupportedError, match="'sort'"):
    onnx_graph.convert(lambda x: jax.numpy.sort(x, axis=1), (4, 4, 1))


def test_onnx_pools_over_padded_windows():
  # ResNet's stem: a 3x3 max pool with stride 2 over a 1-pixel border (padding counts as
  # -inf); a sum pool over a zero border. Negative inputs show a border taken for 0.
  import flax.linen as nn

  def pools(images):
    x = images.astype(jax.numpy.float32) - 128.0
    padding = ((1, 1), (1, 1))
    return jax.numpy.concatenate([nn.max_pool(x, (3, 3), (2, 2), padding=padding),
                                  nn.avg_pool(x, (3, 3), (2, 2), padding=padding,
                                              count_include_pad=True)], axis=-1)

  images = np.random.default_rng(0).integers(0, 256, (2, 9, 10, 2), dtype=np.uint8)
  produced = _onnx_run(onnx_graph.convert(pools, (9, 10, 2)), images)
  np.testing.assert_allclose(produced, np.asarray(pools(images)), atol=1e-4)
