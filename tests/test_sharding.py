"""A train step sharded over 8 simulated CPU devices equals the 1-device step."""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_eight_devices_match_one():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", PYTHONPATH=os.path.dirname(HERE))
  result = subprocess.run([sys.executable, os.path.join(HERE, "sharded_step_check.py")],
                          capture_output=True, text=True, env=env, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  diffs = json.loads(result.stdout.strip().splitlines()[-1])
  assert diffs["loss_value"] > 0
  assert diffs["loss"] <= 1e-5, diffs
  assert diffs["params"] <= 1e-5, diffs
  assert diffs["batch_stats"] <= 1e-5, diffs
