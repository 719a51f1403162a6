"""One sigmoid logit for two classes (`model.num_outputs=1`) on any model, and the
conv_autoencoder's logits having num_classes channels whatever the input's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax import models
from segjax.data import pipeline
from segjax.inference import evaluation
from segjax.models import factory
from segjax.training import train_state, trainer as trainer_lib

from conftest import small_config


@pytest.mark.parametrize("channels, num_classes, tied", [(1, 1, True), (3, 1, False),
                                                         (3, 2, False), (1, 2, False)])
def test_conv_autoencoder_logits_have_num_classes_channels(channels, num_classes, tied):
  model = models.build("conv_autoencoder", num_classes, width_multiplier=0.125)
  x = jnp.zeros((1, 64, 64, channels))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  assert jax.eval_shape(lambda v: model.apply(v, x), variables).shape == (1, 64, 64, num_classes)
  last = variables["params"]["deconv_1_1"]
  assert ("kernel" not in last) == tied  # The seed's tied kernel where the channels match.
  if not tied:
    assert last["kernel"].shape == (7, 7, num_classes, 8)  # (k, k, outputs, features).


@pytest.mark.parametrize("name", ["segnet", "unet", "fcn8"])
def test_num_outputs_one_gives_a_sigmoid_logit(name):
  config = small_config("")
  config.model.name = name
  config.model.num_outputs = 1
  model = factory.create_model(config, 2)
  x = jnp.zeros((1, 32, 32, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  assert jax.eval_shape(lambda v: model.apply(v, x), variables).shape == (1, 32, 32, 1)
  config.model.num_outputs = 0
  assert factory.num_outputs(config, 5) == 5


def test_num_outputs_that_do_not_fit_name_the_key():
  config = small_config("")
  config.model.num_outputs = 1
  with pytest.raises(ValueError, match="model.num_outputs=1 does not fit a dataset of 3"):
    factory.create_model(config, 3)


def test_sigmoid_model_trains_and_scores_two_classes():
  """Masks 0/1 (and ignored pixels), one logit: the loss falls and the metrics are
  the two-class ones, the prediction being logit > 0."""
  config = small_config("")
  config.model.name = "simple_fcn"  # The smallest model: the step compiles fast.
  config.model.num_outputs = 1
  trainer = trainer_lib.Trainer(config, factory.create_model(config, 2), 2, (32, 32, 3), 255)
  batch = pipeline.synthetic_batch(config.batch_size, 32, 32, 3, 2, seed=1)
  batch["mask"][:, :2] = 255
  state, first = trainer.train_step(trainer.state, batch)
  for _ in range(3):
    state, metrics = trainer.train_step(state, batch)
  assert float(metrics["loss"]) < float(first["loss"])
  records = [{"image": image, "mask": mask} for image, mask in zip(batch["image"], batch["mask"])]
  result = trainer.evaluate(state, records).metrics
  logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                          jnp.asarray(batch["image"], jnp.float32) / 127.5 - 1)
  predicted = np.asarray(logits[..., 0] > 0)
  valid = batch["mask"] != 255
  expected = np.mean(predicted[valid] == batch["mask"][valid])
  assert result["pixel_accuracy"] == pytest.approx(expected, abs=1e-6)
  masks = evaluation.predict_masks(trainer.segmenter, train_state.inference_variables(state),
                                   dict(enumerate(batch["image"])))
  np.testing.assert_array_equal(np.stack([masks[i] for i in range(len(records))]), predicted)
