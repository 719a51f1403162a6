"""Sharded training equals single-device training: data, fsdp, accumulation, processes."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
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


@pytest.mark.parametrize("variant", ["data/float32", "fsdp/float64",
                                     "grad_accum_vs_large_batch/float64"])
def test_eight_devices_match_one(eight_device_results, variant):
  diffs = eight_device_results[variant]
  assert diffs["loss_value"] > 0
  assert diffs["loss"] <= 1e-5, diffs
  assert diffs["params"] <= 1e-5, diffs
  assert diffs["batch_stats"] <= 1e-5, diffs


# The same data stream on any topology: `segjax.main` on 2 processes x 2
# devices and on 1 process x 4 devices, and the first resumed on 1 process.
# The two-process run also autotunes the CPU kernels: each process times them,
# and all must then run process 0's choice.
TOPOLOGY_STEPS = 3


def main_command(workdir, tfds_dir) -> list[str]:
  """simple_fcn without dropout, SGD at a constant rate, 32x32 synthetic skin, flips:
  a batch other than the expected one moves the parameters by far more than 1e-5."""
  return [sys.executable, "-m", "segjax.main", "--config",
          os.path.join(os.path.dirname(HERE), "configs", "simple_fcn_digits.py"),
          "--workdir", str(workdir), f"--config.dataset.data_dir={tfds_dir}",
          "--config.dataset.name=synthetic_skin", "--config.dataset.image_size=32",
          "--config.model.dropout_rate=0", "--config.optimizer.name=sgd",
          "--config.learning_rate=0.05", "--config.lr_schedule=constant",
          "--config.batch_size=8", "--config.eval_batch_size=40",
          f"--config.num_train_steps={TOPOLOGY_STEPS}", "--config.log_every_steps=1",
          "--config.checkpoint_every_steps=2", "--config.eval_every_steps=2",
          "--config.num_prediction_images=1"]


def start_processes(command, devices, processes=1):
  port = portpicker.pick_unused_port()
  extra = lambda i: ([] if processes == 1 else [
      "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", str(processes),
      "--process_id", str(i)])
  env = dict(environment(devices), SEGJAX_HOST_MEMORY="release")  # Compile-bound runs.
  return [subprocess.Popen(command + extra(i), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=os.path.dirname(HERE))
          for i in range(processes)]


def finish(workers) -> list[str]:
  """Each process's stdout, once all exited with 0."""
  outputs = [worker.communicate(timeout=400) for worker in workers]
  for worker, (stdout, stderr) in zip(workers, outputs):
    assert worker.returncode == 0, stdout[-2000:] + stderr[-3000:]
  return [stdout for stdout, _ in outputs]


def final_params(workdir) -> dict:
  """The last checkpoint's parameters, on this process's one device whatever wrote them."""
  path = os.path.join(workdir, "checkpoints", str(TOPOLOGY_STEPS), "state")
  checkpointer = ocp.StandardCheckpointer()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                        checkpointer.metadata(path).item_metadata.tree)
  state = checkpointer.restore(path, target)
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(state["params"])}


def train_losses(workdir) -> dict:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {e["step"]: e["loss"] for e in map(json.loads, f) if e["split"] == "train"}


@pytest.fixture(scope="module")
def topologies(tmp_path_factory, tfds_dir):
  root = tmp_path_factory.mktemp("topologies")
  two, one, resumed = root / "two_processes", root / "one_process", root / "resumed"
  running = [start_processes(main_command(two, tfds_dir) + ["--config.cpu_conv_kernels=autotune"],
                             devices=2, processes=2),
             start_processes(main_command(one, tfds_dir), devices=4)]
  two_stdouts, _ = [finish(workers) for workers in running]
  shutil.copytree(two, resumed)
  shutil.rmtree(resumed / "checkpoints" / str(TOPOLOGY_STEPS))
  resumed_stdout, = finish(start_processes(main_command(resumed, tfds_dir), devices=1))
  return two, one, resumed, resumed_stdout, two_stdouts


def test_two_process_run_reports_once_and_writes_one_set_of_outputs(topologies):
  """The real command on two processes: one set of logs, one checkpoint, both exit 0."""
  two, *_, (first, second) = topologies
  assert "4 device(s)" in first and "2 process(es)" in first
  # Only process 0 reports. Process 1's stdout holds the collectives library's
  # messages only, whose lines its threads may split.
  reports = ("dataset ", "model ", "cpu_conv_kernels autotune: ", "step ", "eval at step ",
             "final eval", "outputs in ")
  assert all(any(line.startswith(prefix) for line in first.splitlines())
             for prefix in reports), first
  assert not [line for line in second.splitlines() if line.startswith(reports)]
  with open(two / "metrics.jsonl") as f:
    steps = [(line["split"], line["step"]) for line in map(json.loads, f)]
  assert steps == [("train", 1), ("train", 2), ("eval", 2), ("train", 3), ("eval", 3)], steps
  assert sorted(os.listdir(two / "checkpoints")) == ["2", "3"]


def assert_params_close(actual: dict, expected: dict):
  assert actual.keys() == expected.keys()
  for name in expected:
    np.testing.assert_allclose(actual[name], expected[name], atol=1e-5, rtol=0, err_msg=name)


def test_two_processes_and_one_train_on_the_same_batches(topologies):
  two, one, *_ = topologies
  assert_params_close(final_params(two), final_params(one))
  losses = train_losses(two), train_losses(one)
  assert sorted(losses[0]) == list(range(1, TOPOLOGY_STEPS + 1))
  for step in losses[1]:
    np.testing.assert_allclose(losses[0][step], losses[1][step], rtol=1e-5)


def test_two_process_checkpoint_resumes_on_one_process_with_the_next_batch(topologies):
  two, _, resumed, stdout, _ = topologies
  assert "resumed from" in stdout and "at step 2" in stdout and "1 process(es)" in stdout, stdout
  np.testing.assert_allclose(train_losses(resumed)[3], train_losses(two)[3], rtol=1e-5)
  assert_params_close(final_params(resumed), final_params(two))
