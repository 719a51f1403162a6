"""The SMP decoders and heads (segjax.models.decoders) against SMP's own, without torch.

tests/fixtures/make_decoder_fixtures.py ran SMP 0.6's UnetDecoder, FPNDecoder and
DeepLabV3PlusDecoder with their heads on random feature pyramids, with weights from
`torch_reference.seeded_state_dict`; here the same weights, imported by
`decoders.smp_weights.load`, must give the same logits.
"""

import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import encoder_decoder
from segjax.models.decoders import smp_weights
from torch_reference import seeded_state_dict

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "decoders"
CASES = ("unet", "fpn", "deeplabv3plus_os16", "deeplabv3plus_os8")


class DecoderAndHead(nn.Module):
  """A model without its encoder: params "decoder" and "segmentation_head"."""
  decoder: nn.Module
  segmentation_head: nn.Module

  def __call__(self, features, train=False):
    return self.segmentation_head(self.decoder(features, train))


def model_for(config: dict) -> encoder_decoder._EncoderDecoder:
  """The full model whose decoder and head the fixture's SMP ones are."""
  classes = config["num_classes"]
  if "decoder_channels" in config:
    return encoder_decoder.EncoderUnet(classes, decoder_channels=config["decoder_channels"])
  if "pyramid_channels" in config:
    return encoder_decoder.FPN(classes, decoder_pyramid_channels=config["pyramid_channels"],
                               decoder_segmentation_channels=config["segmentation_channels"],
                               decoder_merge_policy=config["merge_policy"],
                               decoder_dropout=config["dropout"])
  return encoder_decoder.DeepLabV3Plus(
      classes, encoder_output_stride=config["output_stride"],
      decoder_channels=config["out_channels"], decoder_atrous_rates=config["atrous_rates"],
      decoder_aspp_separable=config["aspp_separable"])


def load_case(name):
  data = np.load(FIXTURES / f"{name}.npz")
  config, shapes = json.loads(str(data["config"])), json.loads(str(data["shapes"]))
  features = tuple(jnp.asarray(data[f"feature_{index}"]) for index in range(5))
  module = DecoderAndHead(*model_for(config).decoder_and_head())
  shapes_only = jax.eval_shape(lambda: module.init(jax.random.key(0), features))
  variables = smp_weights.load(shapes_only, seeded_state_dict(shapes))
  return module, variables, features, data["logits"]


@pytest.mark.parametrize("name", CASES)
def test_decoder_and_head_equal_smp(name):
  module, variables, features, expected = load_case(name)
  logits = jax.jit(lambda v, f: module.apply(v, f))(variables, features)
  assert logits.shape == expected.shape and logits.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=0, atol=1e-4)
  assert expected.std() > 0.1  # Logits of order one: 1e-4 is a strict tolerance.


def test_train_mode_updates_batch_norm_and_drops_channels():
  module, variables, features, _ = load_case("deeplabv3plus_os16")
  step = jax.jit(lambda v, f, key: module.apply(v, f, True, mutable=["batch_stats"],
                                               rngs={"dropout": key}))
  logits, updates = step(variables, features, jax.random.key(0))
  again, _ = step(variables, features, jax.random.key(1))
  assert np.isfinite(np.asarray(logits)).all()
  assert not np.allclose(logits, again)  # Dropout draws differ per key.
  before = variables["batch_stats"]["decoder"]["aspp_2"]["mean"]
  assert not np.allclose(updates["batch_stats"]["decoder"]["aspp_2"]["mean"], before)


def test_load_rejects_weights_of_another_architecture():
  module, variables, features, _ = load_case("unet")
  shapes = json.loads(str(np.load(FIXTURES / "unet.npz")["shapes"]))
  wrong = dict(shapes, **{"segmentation_head.0.weight": [5, 4, 3, 3]})
  with pytest.raises(ValueError, match="segmentation_head/0/kernel: shape"):
    smp_weights.load(variables, seeded_state_dict(wrong))
  del shapes["decoder.blocks.4.conv2.1.running_var"]
  with pytest.raises(ValueError, match="SMP weights lack"):
    smp_weights.load(variables, seeded_state_dict(shapes))


def test_models_check_their_options_and_input_size():
  with pytest.raises(ValueError, match="divisible by 32"):
    encoder_decoder.FPN(3).init(jax.random.key(0), jnp.zeros((1, 48, 64, 3)))
  with pytest.raises(ValueError, match="encoder_output_stride must be 8 or 16"):
    encoder_decoder.DeepLabV3Plus(3, encoder_output_stride=32).total_stride
  assert encoder_decoder.DeepLabV3Plus(3, encoder_output_stride=8).total_stride == 8
  assert encoder_decoder.EncoderUnet(3, encoder="resnet18").imagenet_encoder == "resnet18"


# Parameters of SMP 0.6's models with encoder_name="resnet18", classes=12
# (sum of numel over model.parameters()).
SMP_RESNET18_PARAMETERS = {"EncoderUnet": 14_329_804, "FPN": 13_048_652,
                           "DeepLabV3Plus": 12_332_124}


@pytest.mark.parametrize("cls", [encoder_decoder.EncoderUnet, encoder_decoder.FPN,
                                 encoder_decoder.DeepLabV3Plus])
def test_models_with_resnet18_have_smp_parameters_and_input_size_logits(cls):
  pytest.importorskip("segjax.models.encoders")
  model = cls(12, encoder="resnet18")
  images = jax.ShapeDtypeStruct((2, 64, 96, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)
  assert set(variables["params"]) == {"encoder", "decoder", "segmentation_head"}
  count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables["params"]))
  assert count == SMP_RESNET18_PARAMETERS[cls.__name__]
  for train in (False, True):
    logits, _ = jax.eval_shape(
        lambda v, x: model.apply(v, x, train, mutable=["batch_stats"],
                                 rngs={"dropout": jax.random.key(0)}), variables, images)
    assert logits.shape == (2, 64, 96, 12) and logits.dtype == jnp.float32


@pytest.mark.parametrize("align_corners", [True, False])
def test_bilinear_for_symbolic_sizes_equals_the_matrix_form(align_corners):
  # Exports traced for any multiple of the stride gather the two taps; training and
  # fixed-size inference multiply by the interpolation matrices.
  from segjax.models.decoders import resize
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 7, 3)), jnp.float32)
  for size in ((20, 28), (3, 4), (5, 7)):
    expected = resize.bilinear(x, size, align_corners)
    gathered = resize._bilinear_gather(resize._bilinear_gather(x, 1, size[0], align_corners),
                                       2, size[1], align_corners)
    np.testing.assert_allclose(gathered, expected, atol=1e-6, err_msg=str(size))
