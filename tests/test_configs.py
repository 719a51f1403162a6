"""Every config loads, names a registered model and dataset, documents its command,
and builds its model; the command line rejects unknown keys by name."""

import glob
import importlib.util
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from segjax import data, models
from segjax.data import pipeline
from segjax.models import factory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))
NUM_CLASSES = {"synthetic_skin": 2, "synthetic_shapes": 4}


def load(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_every_seed_has_a_config():
  names = {os.path.basename(p) for p in CONFIGS}
  assert {"segnet_skin.py", "conv_autoencoder_lfw.py", "fcn8.py", "fastfcn8.py",
          "mobilenetv2_unet_pets.py", "fc_densenet.py", "vgg16_fcn_pets.py", "unet.py",
          "simple_fcn_digits.py"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_is_complete_and_builds(path):
  module = load(path)
  stem = os.path.basename(path)
  assert f"python -m segjax.main --config configs/{stem}" in module.__doc__
  assert "Expected" in module.__doc__
  config = module.get_config()
  assert config.model.name in models.names()
  assert config.dataset.name in data.names()
  # Offline by default: only the generated datasets.
  assert config.dataset.name in NUM_CLASSES
  model = factory.create_model(config, NUM_CLASSES[config.dataset.name])
  height, width = pipeline.image_size(config.dataset)
  channels = 1 if config.dataset.grayscale else 3
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                             jnp.zeros((1, height, width, channels))))
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, height, width, channels))),
                       shapes)
  assert out.shape[:3] == (2, height, width)


def test_unknown_key_on_the_command_line_names_it(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "segjax.main", "--config", os.path.join(REPO, "configs",
                                                                    "segnet_skin.py"),
       "--workdir", str(tmp_path), "--config.batchsize=4"],
      capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode != 0
  assert "batchsize" in result.stderr


def test_bad_values_end_the_run_before_it_writes_with_one_message(tmp_path):
  workdir = tmp_path / "run"
  result = subprocess.run(
      [sys.executable, "-m", "segjax.main", "--config", os.path.join(REPO, "configs",
                                                                    "segnet_skin.py"),
       "--workdir", str(workdir), "--config.learning_rate=-1",
       "--config.dataset.image_size=65"],
      capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.startswith("error: the config cannot be used:\n"
                                  "  learning_rate=-1.0 must be > 0\n"), result.stderr
  assert "dataset.image_size=65" in result.stderr and "Traceback" not in result.stderr
  assert not workdir.exists()


def test_config_argument_selects_the_seed_data_and_its_workdir():
  from segjax.training import outputs
  skin = load(os.path.join(REPO, "configs", "segnet_skin.py")).get_config("/data/skin_sfa")
  assert (skin.dataset.name, skin.dataset.source_dir) == ("image_folder", "/data/skin_sfa")
  assert skin.dataset.split_file == "/data/skin_sfa/manifest.csv"
  assert skin.dataset.split_column == "orig_split" and skin.dataset.mask_encoding == "binary"
  lfw = load(os.path.join(REPO, "configs", "conv_autoencoder_lfw.py")).get_config("/d/lfw")
  assert (lfw.dataset.name, lfw.dataset.target, lfw.dataset.eval_split) == (
      "lfw_parts", "face", "validation")
  assert lfw.dataset.image_size == 128 and lfw.dataset.grayscale
  # The seed's data gets its own default workdir, apart from the synthetic run's.
  assert outputs.default_workdir("configs/segnet_skin.py") == os.path.join("runs", "segnet_skin")
  assert outputs.default_workdir("configs/segnet_skin.py:../shared/data/skin_sfa/") == os.path.join(
      "runs", "segnet_skin_skin_sfa")
