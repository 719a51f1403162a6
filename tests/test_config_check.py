"""Config values checked before anything is prepared or written (in-process; the command
line's one-message errors are in test_cli.py)."""

import dataclasses

import pytest

from conftest import small_config
from segjax.training import config_check


def problems(config, **kwargs) -> str:
  with pytest.raises(config_check.ConfigError) as raised:
    config_check.check(config, **kwargs)
  return str(raised.value)


def test_mesh_and_micro_batches_that_the_devices_cannot_take(tmp_path):
  config = small_config(str(tmp_path))
  config.mesh.fsdp = 2  # One device here.
  assert "mesh.fsdp=2 must be >= 1 and divide the device count (1)" in problems(config)
  config_check.check(config, devices=False)  # A model summary needs no mesh.
  config.mesh.fsdp = 1
  config.grad_accum_steps = 3  # batch_size 4
  assert "batch_size=4 must divide by grad_accum_steps=3 x 1 device(s)" in problems(config)


def test_freeze_patterns_are_checked_against_the_abstract_parameters(tmp_path):
  config = small_config(str(tmp_path))
  config.optimizer.freeze = ("Conv_0/.*",)
  config_check.check(config)
  config.optimizer.freeze = ("Conv_0/.*", "encoder/.*")
  message = problems(config)
  assert "optimizer.freeze pattern 'encoder/.*' matches no parameter" in message
  assert "Conv_0/.*" not in message
  config.optimizer.freeze = ("Conv_0/[",)
  assert "optimizer.freeze pattern 'Conv_0/[' is not a regular expression" in problems(config)


def test_evaluation_options_are_checked(tmp_path):
  config = small_config(str(tmp_path))
  config.eval.mode = "tiles"
  config.eval.scales = (0.0,)
  message = problems(config)
  assert "eval.mode='tiles': use one of whole, slide" in message


@dataclasses.dataclass
class Data:
  num_classes: int = 2
  class_names: tuple = ("background", "skin")


def test_class_weights_need_one_weight_per_class_of_the_dataset(tmp_path):
  config = small_config(str(tmp_path))
  config_check.check_data(config, Data())
  config.class_weights = (1.0, 2.0)
  config_check.check_data(config, Data())
  config.class_weights = "median_frequency"
  config_check.check_data(config, Data())
  config.class_weights = (1.0, 2.0, 3.0)
  with pytest.raises(config_check.ConfigError,
                     match=r"class_weights=\(1.0, 2.0, 3.0\) has 3 entries but dataset "
                           r"'synthetic_skin' has 2 classes \(background, skin\)"):
    config_check.check_data(config, Data())
