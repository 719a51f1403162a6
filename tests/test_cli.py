"""The commands' one style: --help, flag names, and user errors as one `error:` line with
exit status 2 (a bug keeps its traceback). Each case is one command-line process."""

import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "segnet_skin.py")
TINY = ["--config.dataset.image_size=32", "--config.model.width_multiplier=0.125",
        "--config.batch_size=4", "--config.num_train_steps=2"]


def command(module, *arguments, devices=1, timeout=120):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO,
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  return subprocess.run([sys.executable, "-m", module, *arguments], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


def assert_user_error(result, *expected):
  assert result.returncode == 2, result.stderr[-3000:]
  assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr, result.stderr
  for text in expected:
    assert text in result.stderr, result.stderr


# Each command's flags for the same things carry the same names.
INFERENCE = ("step", "mode", "scales", "flip")
FLAGS = {
    "segjax.main": ("config", "workdir", "coordinator_address"),
    "segjax.evaluate": ("workdir", "split", "output", "config") + INFERENCE,
    "segjax.predict": ("workdir", "export", "input", "output", "probabilities") + INFERENCE,
    "segjax.summary": ("config", "num_classes", "num_channels"),
    "segjax.benchmark": ("config", "steps", "warmup", "compare"),
    "segjax.export": ("workdir", "output", "step", "format", "platforms", "output_kind"),
    "segjax.export.benchmark": ("config", "batch_sizes", "rounds", "compare", "torch"),
}


@pytest.mark.parametrize("module", FLAGS)
def test_help_lists_the_flags_with_their_defaults_and_exits_0(module):
  result = command(module, "--help")
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  listed = set(re.findall(r"^  --(?:\[no\])?(\w+)", result.stdout, re.MULTILINE))
  assert set(FLAGS[module]) | {"verbose"} <= listed, listed
  assert "(default: 'false')" in result.stdout  # --verbose's, at least.


def test_config_values_the_devices_or_the_model_cannot_take(tmp_path):
  workdir = tmp_path / "run"
  result = command("segjax.main", "--config", CONFIG, "--workdir", str(workdir), *TINY,
                   "--config.batch_size=3", "--config.eval_batch_size=5",
                   "--config.optimizer.freeze=('decoder/.*',)", devices=2)
  assert_user_error(
      result, "error: the config cannot be used:\n",
      "batch_size=3 must divide by the number of devices (2)",
      "eval_batch_size=5 must divide by the number of devices (2)",
      "optimizer.freeze pattern 'decoder/.*' matches no parameter")
  assert not workdir.exists()
  result = command("segjax.main", "--config", CONFIG, "--workdir", str(workdir), *TINY,
                   "--config.mesh.fsdp=3", devices=2)
  assert_user_error(result, "mesh.fsdp=3 must be >= 1 and divide the device count (2)")
  assert not workdir.exists()


def test_class_weights_of_another_class_count(tfds_dir, tmp_path):
  workdir = tmp_path / "run"
  result = command("segjax.main", "--config", CONFIG, "--workdir", str(workdir), *TINY,
                   f"--config.dataset.data_dir={tfds_dir}", "--config.class_weights=(1.,2.,3.)")
  assert_user_error(result, "class_weights=(1.0, 2.0, 3.0) has 3 entries but dataset "
                            "'synthetic_skin' has 2 classes")
  assert not workdir.exists()


def test_unknown_split(tfds_dir, tmp_path):
  workdir = tmp_path / "run"
  result = command("segjax.main", "--config", CONFIG, "--workdir", str(workdir), *TINY,
                   f"--config.dataset.data_dir={tfds_dir}", "--config.dataset.eval_split=val")
  assert_user_error(result, "no split 'val'")
  assert not workdir.exists()


def test_flags_and_config_keys_that_do_not_exist():
  assert_user_error(command("segjax.main", "--config", CONFIG, "--config.batchsize=3"),
                    "no key 'batchsize'", 'Did you mean "batch_size"')
  assert_user_error(command("segjax.summary", "--config", "configs/nosuch.py"),
                    "--config: cannot load the config file", "configs/nosuch.py")


@pytest.mark.parametrize("module, arguments, expected", [
    ("segjax.benchmark", ["--config", CONFIG, "--steps", "0"], "--steps 0"),
    ("segjax.export.benchmark", ["--config", CONFIG, "--torch", "--batch_sizes", "0"],
     "--batch_sizes 0"),
    ("segjax.export", ["--workdir", "run", "--output", "out", "--format", "pdf"], "--format pdf"),
    ("segjax.predict", ["--workdir", "run", "--input", "in", "--output", "out", "--scales",
                        "1,0"], "--scales 1,0: give positive numbers"),
    ("segjax.evaluate", ["--workdir", "run", "--step", "last"], "--step 'last': use a step"),
])
def test_user_errors_of_each_command(module, arguments, expected):
  assert_user_error(command(module, *arguments), expected)


def test_export_keeps_the_traceback_of_a_bug(tmp_path):
  """A ValueError out of the export is a bug, not a user error."""
  script = ("import runpy, sys\n"
            "from segjax.export import artifacts\n"
            "def export_run(*args, **kwargs):\n  raise ValueError('a bug')\n"
            "artifacts.export_run = export_run\n"
            f"sys.argv = ['export', '--workdir', 'run', '--output', {str(tmp_path / 'o')!r}]\n"
            "runpy.run_module('segjax.export', run_name='__main__', alter_sys=True)\n")
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 1 and "Traceback" in result.stderr, result.stderr[-2000:]
  assert "ValueError: a bug" in result.stderr and "error: a bug" not in result.stderr


def test_evaluate_takes_the_inference_flags_of_predict(tfds_dir, tmp_path):
  from tiny_run import write_run
  workdir = str(tmp_path / "run")
  write_run(workdir, data_dir=tfds_dir)
  result = command("segjax.evaluate", "--workdir", workdir, "--step", "6", "--mode", "slide",
                   "--scales", "1,0.5", "--flip", timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  last = json.loads(result.stdout.strip().splitlines()[-1])
  assert (last["step"], last["mode"], last["scales"], last["flip"]) == (6, "slide", [1.0, 0.5],
                                                                        True)
