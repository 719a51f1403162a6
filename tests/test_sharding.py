"""Sharded training equals single-device training: data, fsdp, accumulation, processes."""

import json
import os
import subprocess
import sys

import numpy as np
import portpicker
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "sharded_step_check.py")


def environment(devices):
  return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
              JAX_PLATFORMS="cpu", PYTHONPATH=os.path.dirname(HERE))


@pytest.fixture(scope="module")
def eight_device_results():
  result = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True,
                          env=environment(8), timeout=400)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("variant", ["data/float32", "data/float64", "fsdp/float64",
                                     "grad_accum/float64", "grad_accum_vs_large_batch/float64"])
def test_eight_devices_match_one(eight_device_results, variant):
  diffs = eight_device_results[variant]
  assert diffs["loss_value"] > 0
  assert diffs["loss"] <= 1e-5, diffs
  assert diffs["params"] <= 1e-5, diffs
  assert diffs["batch_stats"] <= 1e-5, diffs


def test_two_processes_match_one_process_with_four_devices(tmp_path):
  port = portpicker.pick_unused_port()
  outputs = [str(tmp_path / "two.npz"), str(tmp_path / "one.npz")]
  workers = [subprocess.Popen(
      [sys.executable, SCRIPT, "--processes", "2", "--process_id", str(i), "--port", str(port),
       "--out", outputs[0]], env=environment(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(2)]
  single = subprocess.run([sys.executable, SCRIPT, "--out", outputs[1]], env=environment(4),
                          capture_output=True, text=True, timeout=400)
  for worker in workers:
    _, stderr = worker.communicate(timeout=400)
    assert worker.returncode == 0, stderr[-3000:]
  assert single.returncode == 0, single.stderr[-3000:]
  two, one = np.load(outputs[0]), np.load(outputs[1])
  assert sorted(two.files) == sorted(one.files)
  assert np.all(one["losses"] > 0)
  for name in one.files:
    np.testing.assert_allclose(two[name], one[name], atol=1e-5, err_msg=name)


def test_two_process_training_run_end_to_end(tmp_path, tfds_dir):
  """The real command on two processes: one set of logs, one checkpoint, both exit 0."""
  port = portpicker.pick_unused_port()
  workdir = tmp_path / "run"
  command = [sys.executable, "-m", "segjax.main", "--config",
             os.path.join(os.path.dirname(HERE), "configs", "segnet_skin.py"),
             "--workdir", str(workdir), f"--config.dataset.data_dir={tfds_dir}",
             "--config.model.width_multiplier=0.125", "--config.dataset.image_size=32",
             "--config.batch_size=4", "--config.eval_batch_size=8",
             "--config.num_train_steps=4", "--config.log_every_steps=2",
             "--config.eval_every_steps=4", "--config.checkpoint_every_steps=4",
             # Each process times the kernels; all must then run process 0's choice.
             "--config.cpu_conv_kernels=autotune",
             "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2"]
  workers = [subprocess.Popen(command + ["--process_id", str(i)], env=environment(2),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(HERE)) for i in range(2)]
  outputs = [worker.communicate(timeout=400) for worker in workers]
  for worker, (_, stderr) in zip(workers, outputs):
    assert worker.returncode == 0, stderr[-3000:]
  assert "4 device(s)" in outputs[0][0] and "2 process(es)" in outputs[0][0]
  # Only process 0 reports. Process 1's stdout holds the collectives library's
  # messages only, whose lines its threads may split.
  reports = ("dataset ", "model ", "cpu_conv_kernels autotune: ", "step ", "eval at step ",
             "final eval", "outputs in ")
  assert all(any(line.startswith(prefix) for line in outputs[0][0].splitlines())
             for prefix in reports), outputs[0][0]
  assert not [line for line in outputs[1][0].splitlines() if line.startswith(reports)]
  with open(workdir / "metrics.jsonl") as f:
    steps = [(line["split"], line["step"]) for line in map(json.loads, f)]
  assert steps == [("train", 2), ("train", 4), ("eval", 4)]
  assert (workdir / "checkpoints" / "4").is_dir()
