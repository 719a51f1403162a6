"""Freezing, schedules, L2 and pretrained-encoder wiring of the trainer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from segjax import config as config_lib
from segjax.models import factory
from segjax.runtime import sharding
from segjax.training import optim, train_state, trainer as trainer_lib


def tiny_config(model="segnet", **model_options):
  config = config_lib.base_config()
  config.model.name = model
  config.model.width_multiplier = 0.125
  if model == "segnet":  # Two levels: every kind of SegNet layer, compiled in half the time.
    config.model.widths = (64, 128)
  for key, value in model_options.items():
    config.model[key] = value
  config.batch_size = 2
  config.eval_batch_size = 2
  config.learning_rate = 1e-2
  config.lr_schedule = "constant"
  return config


def trainer_for(config):
  model = factory.create_model(config, 2)
  return model, trainer_lib.Trainer(config, model, 2, (32, 32, 3), 255,
                                    mesh=sharding.create_mesh(devices=jax.devices()[:1]))


def one_step(trainer):
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8),
           "mask": rng.integers(0, 2, (2, 32, 32), dtype=np.uint8)}
  before = jax.device_get((trainer.state.params, trainer.state.batch_stats))
  state, _ = trainer.train_step(trainer.state, sharding.put_batch(batch, trainer.batch_sharding))
  return before, jax.device_get((state.params, state.batch_stats))


def changed(a, b):
  return {optim.path_name(path): not np.array_equal(x, y) for (path, x), y in zip(
      jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b))}


def test_config_freeze_keeps_parameters_and_statistics():
  config = tiny_config()
  config.optimizer.freeze = ("Conv_0/.*", "BatchNorm_0/.*")
  _, trainer = trainer_for(config)
  (params0, stats0), (params1, stats1) = one_step(trainer)
  moved = changed(params0, params1)
  assert not moved["Conv_0/kernel"] and not moved["Conv_0/bias"]
  assert not moved["BatchNorm_0/scale"] and not moved["BatchNorm_0/bias"]
  assert moved["Conv_1/kernel"] and moved["BatchNorm_1/scale"]
  stats_moved = changed(stats0, stats1)
  assert not stats_moved["BatchNorm_0/mean"] and not stats_moved["BatchNorm_0/var"]
  assert stats_moved["BatchNorm_1/mean"]


def test_model_frozen_encoder_stays_fixed():
  config = tiny_config("vgg16_skip_fcn")
  _, trainer = trainer_for(config)
  (params0, _), (params1, _) = one_step(trainer)
  moved = changed(params0, params1)
  encoder = [name for name in moved if name.startswith("encoder/")]
  assert encoder and not any(moved[name] for name in encoder)
  assert any(moved[name] for name in moved if not name.startswith("encoder/"))


def test_freeze_pattern_matching_nothing_is_an_error():
  config = tiny_config()
  config.optimizer.freeze = ("encoder/.*",)
  with pytest.raises(ValueError, match="matches no parameter"):
    trainer_for(config)


def test_schedules():
  config = tiny_config()
  config.num_train_steps = 100
  config.learning_rate = 1.0
  config.warmup_steps = 10
  config.lr_schedule = "polynomial"
  config.lr_power = 2.0
  schedule = optim.learning_rate_schedule(config)
  assert float(schedule(5)) == pytest.approx(0.5)
  assert float(schedule(10 + 45)) == pytest.approx((1 - 45 / 90) ** 2)
  assert float(schedule(100)) == pytest.approx(0.0)
  config.lr_schedule = "warmup_cosine"
  schedule = optim.learning_rate_schedule(config)
  assert float(schedule(10)) == pytest.approx(1.0)
  assert float(schedule(55)) == pytest.approx(0.5, abs=1e-6)
  config.lr_schedule = "step"
  with pytest.raises(ValueError, match="lr_schedule"):
    optim.learning_rate_schedule(config)


def test_l2_regularisation_decays_kernels_only():
  config = tiny_config()
  config.optimizer.name = "sgd"
  config.optimizer.momentum = 0.0
  config.optimizer.l2_regularization = 0.1
  config.learning_rate = 0.5
  tx = optim.create_optimizer(config)
  params = {"conv": {"kernel": jnp.ones((3,)), "bias": jnp.ones((3,))}}
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  np.testing.assert_allclose(updates["conv"]["kernel"], -0.5 * 2 * 0.1)
  np.testing.assert_allclose(updates["conv"]["bias"], 0.0)


def test_pretrained_weights_replace_the_encoder(monkeypatch):
  config = tiny_config("vgg16_skip_fcn")
  config.model.pretrained = "imagenet"
  model, trainer = trainer_for(config)
  seen = {}

  def fake_load(model_arg, variables, path=None, cache_dir=None):
    seen["path"] = path
    params = dict(variables["params"])
    params["encoder"] = jax.tree.map(np.ones_like, params["encoder"])
    return {**variables, "params": params}

  monkeypatch.setattr(train_state.pretrained, "load_imagenet", fake_load)
  state = train_state.load_pretrained(config, model, trainer.state)
  assert seen["path"] is None
  for leaf in jax.tree.leaves(state.params["encoder"]):
    np.testing.assert_array_equal(leaf, 1.0)
  head = jax.tree.leaves({k: v for k, v in state.params.items() if k != "encoder"})
  assert head and not all(np.all(np.asarray(x) == 1.0) for x in head)


def test_bfloat16_compute_keeps_float32_state_and_ema_follows_parameters():
  config = tiny_config()
  config.dtype = "bfloat16"
  config.ema_decay = 0.75
  _, trainer = trainer_for(config)
  initial = jax.device_get(trainer.state.params)
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8),
           "mask": rng.integers(0, 2, (2, 32, 32), dtype=np.uint8)}
  state, metrics = trainer.train_step(trainer.state,
                                      sharding.put_batch(batch, trainer.batch_sharding))
  assert np.isfinite(float(metrics["loss"]))
  params, ema = jax.device_get((state.params, state.ema_params))
  for leaf in jax.tree.leaves((params, ema, jax.device_get(state.opt_state),
                               jax.device_get(state.batch_stats))):
    if hasattr(leaf, "dtype") and np.issubdtype(leaf.dtype, np.floating):
      assert leaf.dtype == np.float32
  for p0, p1, e in zip(jax.tree.leaves(initial), jax.tree.leaves(params), jax.tree.leaves(ema)):
    np.testing.assert_allclose(e, 0.75 * p0 + 0.25 * p1, rtol=1e-6, atol=1e-7)
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(initial),
                                                      jax.tree.leaves(params)))


def test_update_that_overflows_the_parameters_is_skipped():
  # A learning rate beyond float32 range: loss and gradients of the step are
  # finite, the updated parameters are not.
  config = tiny_config()
  config.learning_rate = 1e39
  _, trainer = trainer_for(config)
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8),
           "mask": rng.integers(0, 2, (2, 32, 32), dtype=np.uint8)}
  before = jax.device_get(trainer.state.params)
  state, metrics = trainer.train_step(trainer.state,
                                      sharding.put_batch(batch, trainer.batch_sharding))
  assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["grad_norm"]))
  assert int(metrics["nonfinite"]) == 1
  assert int(state.step) == 1
  for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(jax.device_get(state.params))):
    np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_encoder_lr_multiplier_scales_the_encoders_update_only(name):
  config = tiny_config()
  config.optimizer.name = name
  config.optimizer.weight_decay = 0.01
  params = {"encoder": {"conv": {"kernel": jnp.full((3,), 0.5)}},
            "decoder": {"conv": {"kernel": jnp.full((3,), 0.5)}}}
  grads = jax.tree.map(lambda p: jnp.array([0.3, -0.2, 0.1]), params)

  def update(multiplier):
    config.optimizer.encoder_lr_multiplier = multiplier
    tx = optim.create_optimizer(config)
    updates, _ = tx.update(grads, tx.init(params), params)
    return updates

  full, tenth = update(1.0), update(0.1)
  np.testing.assert_allclose(tenth["encoder"]["conv"]["kernel"],
                             0.1 * full["encoder"]["conv"]["kernel"], rtol=1e-6)
  np.testing.assert_array_equal(tenth["decoder"]["conv"]["kernel"],
                                full["decoder"]["conv"]["kernel"])
  assert np.all(np.abs(full["encoder"]["conv"]["kernel"]) > 0)


def test_encoder_lr_multiplier_with_a_frozen_pattern():
  config = tiny_config()
  config.optimizer.encoder_lr_multiplier = 0.5
  params = {"encoder": {"a": jnp.ones(2), "b": jnp.ones(2)}, "head": jnp.ones(2)}
  tx = optim.create_optimizer(config, frozen_patterns=("encoder/a",))
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(updates["encoder"]["a"], 0.0)
  np.testing.assert_allclose(updates["encoder"]["b"], 0.5 * updates["head"], rtol=1e-6)
