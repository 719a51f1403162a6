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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variant", ["data", "fsdp", "grad_accum", "grad_accum_vs_large_batch"])
def test_eight_devices_match_one(eight_device_results, variant, dtype):
  variant = f"{variant}/{dtype}"
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
