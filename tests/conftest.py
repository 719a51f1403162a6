"""Shared fixtures: a prepared synthetic dataset and a small, fast config."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from segjax import config as config_lib  # noqa: E402


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """A TFDS data dir shared by the session (the synthetic skin data is written once)."""
  return str(tmp_path_factory.mktemp("tfds"))


def small_config(data_dir: str):
  """SegNet at 1/8 width on 32x32 synthetic skin: a few seconds per run."""
  config = config_lib.base_config()
  config.dataset.data_dir = data_dir
  config.dataset.image_size = 32
  config.model.width_multiplier = 0.125
  config.batch_size = 4
  config.eval_batch_size = 16
  config.num_train_steps = 6
  config.log_every_steps = 2
  config.eval_every_steps = 3
  config.checkpoint_every_steps = 3
  config.learning_rate = 1e-3
  config.lr_schedule = "constant"
  config.num_prediction_images = 2
  return config


@pytest.fixture
def config(tfds_dir):
  return small_config(tfds_dir)
