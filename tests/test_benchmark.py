"""The train-step benchmark command: its JSON line, and the PyTorch comparison."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_TORCH = importlib.util.find_spec("torch") is not None

KEYS = ("images_per_sec", "compile_s", "gflops_per_sec", "matmul_peak_gflops", "step_time_s",
        "flops_per_step", "peak_memory_bytes", "cpu_s_per_step")
TORCH_KEYS = ("torch_images_per_sec", "ratio", "torch_step_time_s", "torch_flops_per_step",
              "torch_gflops_per_sec", "cpu_ratio", "ratio_min")


# SegNet with two narrow levels: the same layers, compiled in a few seconds.
TINY_CONFIG = """
from segjax import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.model.name = "segnet"
  config.model.widths = (8, 16)
  config.dataset.image_size = 32
  config.batch_size = 2
  return config
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory):
  """One tiny run of the command (with the PyTorch comparison where PyTorch is installed)."""
  config_file = tmp_path_factory.mktemp("benchmark") / "tiny_segnet.py"
  config_file.write_text(TINY_CONFIG)
  command = [sys.executable, "-m", "segjax.benchmark", "--config", str(config_file),
             "--config.dataset.image_size=32",
             "--steps", "2", "--warmup", "1",
             "--matmul_size", "256", "--matmul_repeats", "2"]
  if HAS_TORCH:
    command += ["--compare", "torch"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
  assert done.returncode == 0, done.stderr[-3000:]
  lines = done.stdout.strip().splitlines()
  assert len(lines) > 1  # Human-readable lines first.
  return json.loads(lines[-1])


def _positive_finite(value):
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_json_line(result):
  for key in KEYS:
    assert _positive_finite(result[key]), (key, result[key])
  assert result["model"] == "segnet" and result["batch_size"] == 2
  assert result["image_size"] == [32, 32]
  assert result["images_per_sec"] == pytest.approx(2 / result["step_time_s"])
  assert result["gflops_per_sec"] == pytest.approx(
      result["flops_per_step"] / result["step_time_s"] / 1e9)
  assert result["step_time_min_s"] <= result["step_time_s"] <= result["step_time_max_s"]
  assert result["cpu_conv_kernels"] == "default"  # Autotune's pick: tests/test_cpu_kernels.py.


def test_torch_comparison(result):
  pytest.importorskip("torch")
  for key in TORCH_KEYS:
    assert _positive_finite(result[key]), (key, result[key])
  assert result["torch_parameters"] == result["parameters"]
  assert result["ratio"] == pytest.approx(result["images_per_sec"] / result["torch_images_per_sec"])
  # The same convolutions: XLA's count differs only by the transposed convolutions'
  # phase packing (16 taps for 9), BatchNorm and the optimizer.
  assert 0.8 < result["torch_flops_per_step"] / result["flops_per_step"] < 1.2


@pytest.mark.parametrize("name, parameters", [("segnet", 11_737_156), ("unet", 31_031_810)])
def test_torch_models_match_parameter_counts(name, parameters):
  pytest.importorskip("torch")
  sys.path.insert(0, REPO)
  from benchmarks import torch_models
  assert torch_models.num_parameters(torch_models.build(name, 2, 3)) == parameters


def test_torch_models_match_flax_shapes():
  torch = pytest.importorskip("torch")
  import jax
  import jax.numpy as jnp
  sys.path.insert(0, REPO)
  from benchmarks import torch_models
  from segjax import models
  for name, options in (("segnet", {"width_multiplier": 0.125}),
                        ("unet", {"width_multiplier": 0.125, "depth": 2})):
    flax_model = models.build(name, 3, **options)
    variables = jax.eval_shape(lambda: flax_model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1))))
    flax_count = sum(x.size for x in jax.tree.leaves(variables["params"]))
    torch_model = torch_models.build(name, 3, 1, **options)
    assert torch_models.num_parameters(torch_model) == flax_count
    assert torch_model(torch.zeros(2, 1, 32, 32)).shape == (2, 3, 32, 32)
