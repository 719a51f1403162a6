"""Runs that survive: kill -9, preemption (on two processes too), another device count, damaged
checkpoints, non-finite steps, and a second run on a workdir in use.

Every run is the command line (`python -m segjax.main`) in a subprocess:
SegNet with two levels at 1/8 width on 32x32 synthetic skin, batch 8, a constant learning
rate (so that the number of steps is not part of the compiled program). The
runs share a persistent compilation cache, so only the first run of each
program compiles. Signals, kills and a second run land while a run waits at a
step the test names ($SEGJAX_TEST_PAUSE, `Run(pause_at=...)`): nothing races the
clock. The last tests check the pieces in-process.
"""

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import portpicker
import pytest

from segjax.data import prefetch
from segjax.runtime import sharding as sharding_lib
from segjax.training import checkpointing, run_control, trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "segnet_skin.py")
STEPS = 20  # Enough that a signal sent a few steps in lands mid-run.
CHECKPOINT_EVERY = 4  # With max_to_keep 3, a finished run keeps 12, 16 and 20.
TIMEOUT = 300
_run_ids = itertools.count()


def flags(data_dir, **overrides) -> list[str]:
  values = {
      "dataset.data_dir": data_dir, "dataset.image_size": 32, "model.width_multiplier": 0.125,
      "model.widths": "(64,128)",  # Two SegNet levels: every kind of layer, half the compile.
      "batch_size": 8, "eval_batch_size": 16, "num_train_steps": STEPS,
      "lr_schedule": "constant", "learning_rate": 1e-3,
      "checkpoint_every_steps": CHECKPOINT_EVERY, "log_every_steps": 1,
      "eval_every_steps": 1000, "num_prediction_images": 1}
  values.update(overrides)
  return [f"--config.{key}={value}" for key, value in values.items()]


class Run:
  """One `python -m segjax.main` process; its stdout and stderr go to files.

  `pause_at`: the run waits after that step (run_control.pause_for_tests) until it
  receives a stop signal or `resume()` is called: signals and kills land at a known step.
  `args`: more command-line arguments (a multi-process run's).
  """

  def __init__(self, workdir, data_dir, cache_dir, devices=1, pause_at=None, args=(),
               **overrides):
    self.workdir = workdir
    os.makedirs(workdir, exist_ok=True)
    # This process's lines of metrics.jsonl are those not there before it started (a
    # resumed run drops the lines of the steps it redoes); `_lines_at_end` once it ended.
    self._lines_before, self._lines_at_end = set(self._metrics_lines()), None
    name = f"{workdir}.{next(_run_ids)}"
    self._stdout, self._stderr = open(name + ".stdout", "w+"), open(name + ".stderr", "w+")
    self.pause_dir = name + ".pause"
    pause = {}
    if pause_at is not None:
      os.makedirs(self.pause_dir)
      pause = {run_control.PAUSE_VARIABLE: f"{pause_at}:{self.pause_dir}"}
    # SEGJAX_HOST_MEMORY=release: these small runs are compile-bound, and kept host
    # memory only makes compiling slower (segjax.runtime.host_memory); the two-process
    # training test in test_sharding.py runs with the default.
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO, SEGJAX_HOST_MEMORY="release",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_COMPILATION_CACHE_DIR=cache_dir,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1", **pause)
    self.process = subprocess.Popen(
        [sys.executable, "-m", "segjax.main", "--config", CONFIG, "--workdir", workdir,
         *flags(data_dir, **overrides), *args],
        cwd=REPO, env=env, stdout=self._stdout, stderr=self._stderr)

  def wait_paused(self):
    """Returns once the run waits at its `pause_at` step."""
    self.wait_until(lambda: os.path.exists(os.path.join(self.pause_dir, "paused")),
                    "the pause step")

  def resume(self):
    open(os.path.join(self.pause_dir, "resume"), "w").close()

  @property
  def stdout(self) -> str:
    self._stdout.seek(0)
    return self._stdout.read()

  @property
  def stderr(self) -> str:
    self._stderr.seek(0)
    return self._stderr.read()

  def output(self) -> str:
    return f"stdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}"

  def wait(self, timeout=TIMEOUT) -> int:
    try:
      returncode = self.process.wait(timeout)
    except subprocess.TimeoutExpired:
      self.process.kill()
      self.process.wait()
      pytest.fail(f"run in {self.workdir} took over {timeout} s:\n{self.output()}")
    self._lines_at_end = self._metrics_lines()
    return returncode

  def _metrics_lines(self) -> list[str]:
    """The complete lines of metrics.jsonl now."""
    try:
      with open(os.path.join(self.workdir, "metrics.jsonl")) as f:
        return f.read().split("\n")[:-1]
    except FileNotFoundError:
      return []

  def train_lines(self) -> list[dict]:
    """The train lines this process wrote to metrics.jsonl (each holds a measured
    images/s, so no line of another process is the same)."""
    lines = self._metrics_lines() if self._lines_at_end is None else self._lines_at_end
    events = [json.loads(line) for line in lines if line not in self._lines_before]
    return [e for e in events if e["split"] == "train"]

  def logged_steps(self) -> list[int]:
    return [e["step"] for e in self.train_lines()]

  def wait_until(self, condition, what: str, timeout=TIMEOUT):
    deadline = time.time() + timeout
    while not condition():
      if self.process.poll() is not None:
        pytest.fail(f"run ended (exit {self.process.returncode}) before {what}:\n{self.output()}")
      if time.time() > deadline:
        self.process.kill()
        pytest.fail(f"no {what} within {timeout} s:\n{self.output()}")
      time.sleep(0.005)


def checkpoint_steps(workdir) -> list[int]:
  directory = os.path.join(workdir, "checkpoints")
  names = os.listdir(directory) if os.path.isdir(directory) else []
  return sorted(int(name) for name in names if name.isdigit())


def load_state(workdir, step) -> dict:
  return ocp.StandardCheckpointer().restore(
      os.path.join(workdir, "checkpoints", str(step), "state"))


def flat(tree) -> dict:
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def assert_bitwise_equal(actual, expected):
  actual, expected = flat(actual), flat(expected)
  assert actual.keys() == expected.keys()
  differing = [key for key in expected if not np.array_equal(actual[key], expected[key])]
  assert not differing, f"{len(differing)} of {len(expected)} arrays differ, e.g. {differing[:5]}"


def all_finite(tree) -> bool:
  return all(np.all(np.isfinite(x)) for x in flat(tree).values())


def resumed_step(stdout: str) -> int | None:
  match = re.search(r"resumed from .* at step (\d+)", stdout)
  return int(match.group(1)) if match else None


def truncate_array_data(state_directory: str) -> None:
  """Cuts every OCDBT data file in half, as a full disk or a copy cut short leaves them."""
  for folder, _, names in os.walk(state_directory):
    if os.path.basename(folder) == "d":
      for name in names:
        with open(os.path.join(folder, name), "r+b") as f:
          f.truncate(os.path.getsize(f.name) // 2)


def remove_checkpoints_after(workdir, step):
  for later in checkpoint_steps(workdir):
    if later > step:
      shutil.rmtree(os.path.join(workdir, "checkpoints", str(later)))


@pytest.fixture(scope="module")
def cli(tmp_path_factory, tfds_dir):
  """Starts a run in a workdir: a name under this module's folder, or a path."""
  from conftest import small_config
  from segjax import data
  data.load(small_config(tfds_dir).dataset)  # Prepared here, so that no two runs prepare it.
  cache_dir = str(tmp_path_factory.mktemp("compilation_cache"))
  root = tmp_path_factory.mktemp("runs")

  def start(name, devices=1, pause_at=None, args=(), **overrides) -> Run:
    return Run(os.path.join(root, name), tfds_dir, cache_dir, devices, pause_at, args,
               **overrides)

  return start


@pytest.fixture(scope="module")
def reference(cli):
  """An uninterrupted run, and a second run started on its workdir while it waits at step 2."""
  run = cli("reference", pause_at=2)
  run.wait_paused()
  intruder = cli("reference")
  intruder.wait()
  overlapped = run.process.poll() is None
  run.resume()
  assert run.wait() == 0, run.output()
  return run, intruder, overlapped


@pytest.fixture(scope="module")
def killed(cli):
  """A run killed with SIGKILL at step 6, two steps past its first checkpoint (step 5
  logged, not step 6), then started again."""
  first = cli("killed", pause_at=CHECKPOINT_EVERY + 2)
  first.wait_paused()
  first.wait_until(lambda: checkpoint_steps(first.workdir) == [CHECKPOINT_EVERY],
                   "the first checkpoint written")
  first.process.send_signal(signal.SIGKILL)
  assert first.wait() == -signal.SIGKILL
  killed_at = max(first.logged_steps())
  second = cli("killed")
  assert second.wait() == 0, second.output()
  return killed_at, second


def test_killed_run_resumes_bitwise(reference, killed):
  """The same final parameters, optimizer state and statistics, bit for bit."""
  killed_at, resumed = killed
  start = resumed_step(resumed.stdout)
  assert (start, killed_at) == (CHECKPOINT_EVERY, CHECKPOINT_EVERY + 1), resumed.output()
  assert resumed.logged_steps() == list(range(start + 1, STEPS + 1))
  # The steps logged after the checkpoint before the kill are dropped: one line per step.
  with open(os.path.join(resumed.workdir, "metrics.jsonl")) as f:
    events = [json.loads(line) for line in f]
  assert [e["step"] for e in events if e["split"] == "train"] == list(range(1, STEPS + 1))
  assert re.search(rf"\d+ line\(s\) of steps after {start} dropped", resumed.stdout)
  final = load_state(resumed.workdir, STEPS)
  expected = load_state(reference[0].workdir, STEPS)
  assert int(final["step"]) == STEPS
  for key in ("params", "opt_state", "batch_stats"):
    assert_bitwise_equal(final[key], expected[key])
  assert_bitwise_equal(final, expected)


# SIGTERM at step 3 of a run; the same command; SIGINT at step 6 of that one; again.
# Neither is a checkpoint step (every 4).
SIGNAL_STEPS = {"SIGTERM": 3, "SIGINT": 6}


@pytest.fixture(scope="module")
def preempted(cli):
  results = {}
  run = cli("preempted", pause_at=SIGNAL_STEPS["SIGTERM"])
  for signum, next_pause in ((signal.SIGTERM, SIGNAL_STEPS["SIGINT"]), (signal.SIGINT, None)):
    run.wait_paused()
    run.process.send_signal(signum)
    returncode = run.wait()
    saved = checkpoint_steps(run.workdir)
    stopped, run = run, cli("preempted", pause_at=next_pause)
    results[signum.name] = stopped, returncode, saved, run
  assert run.wait() == 0, run.output()
  return results


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_preemption_saves_and_exits_zero(preempted, signame):
  stopped, returncode, saved, resumed = preempted[signame]
  assert returncode == 0, stopped.output()
  match = re.search(rf"{signame}: saved a checkpoint at step (\d+)", stopped.stdout)
  assert match, stopped.output()
  step = int(match.group(1))
  # At the step the signal came in, without another step: the last it trained and
  # logged, and the newest checkpoint.
  assert step == SIGNAL_STEPS[signame] == stopped.logged_steps()[-1]
  assert step == saved[-1]
  assert resumed_step(resumed.stdout) == step, resumed.output()
  assert resumed.logged_steps()[0] == step + 1


@pytest.fixture(scope="module")
def moved(cli, reference, tmp_path_factory):
  """The reference run continued on 8 devices from its step-12 checkpoint; then
  continued on 1 device from the step-16 checkpoint written on 8."""
  workdir = str(tmp_path_factory.mktemp("moved") / "run")
  shutil.copytree(reference[0].workdir, workdir)
  remove_checkpoints_after(workdir, 12)
  on_eight = cli(workdir, devices=8)
  assert on_eight.wait() == 0, on_eight.output()
  remove_checkpoints_after(workdir, 16)
  on_one = cli(workdir, devices=1)
  assert on_one.wait() == 0, on_one.output()
  return on_eight, on_one


def test_checkpoint_restores_on_another_device_count(moved, reference):
  on_eight, on_one = moved
  for run, devices, start in ((on_eight, 8, 12), (on_one, 1, 16)):
    assert f"{devices} device(s)" in run.stdout, run.output()
    assert resumed_step(run.stdout) == start, run.output()
    assert run.logged_steps() == list(range(start + 1, STEPS + 1))
  losses = [{e["step"]: e["loss"] for e in run.train_lines()}
            for run in (reference[0], on_eight, on_one)]
  # The first step after a restore is the saved parameters on the batch after
  # the saved data position: only the order of additions across devices differs.
  np.testing.assert_allclose(losses[1][13], losses[0][13], rtol=1e-5)
  np.testing.assert_allclose(losses[2][17], losses[1][17], rtol=1e-5)
  final = load_state(on_one.workdir, STEPS)
  assert int(final["step"]) == STEPS and all_finite(final)


def test_damaged_checkpoint_is_moved_aside(cli, reference, tmp_path):
  workdir = str(tmp_path / "damaged")
  shutil.copytree(reference[0].workdir, workdir)
  *_, previous, latest = checkpoint_steps(workdir)
  truncate_array_data(os.path.join(workdir, "checkpoints", str(latest), "state"))
  # A save killed midway leaves its temporary folder.
  leftover = os.path.join(workdir, "checkpoints", f"{previous + 1}.orbax-checkpoint-tmp")
  shutil.copytree(os.path.join(workdir, "checkpoints", str(previous)), leftover)
  os.remove(os.path.join(leftover, "commit_success.txt"))

  run = cli(workdir)
  assert run.wait() == 0, run.output()
  assert f"{workdir}/checkpoints/{latest} is damaged" in run.stdout, run.output()
  assert f"checkpoints/{previous + 1}" not in run.stdout
  assert resumed_step(run.stdout) == previous, run.output()
  aside = [name for name in os.listdir(os.path.join(workdir, "checkpoints"))
           if name.startswith(f"damaged_{latest}_")]
  assert len(aside) == 1
  # The steps after the previous checkpoint again, on the same batches.
  assert run.logged_steps() == list(range(previous + 1, STEPS + 1))
  assert_bitwise_equal(load_state(workdir, STEPS), load_state(reference[0].workdir, STEPS))


@pytest.fixture(scope="module")
def diverged(cli):
  """Adam at a learning rate of 1e30: the second step's loss is not finite."""
  overrides = dict(learning_rate=1e30, num_train_steps=6, checkpoint_every_steps=1)
  stopped = cli("nonfinite_stop", **overrides)
  stopped.wait()
  skipped = cli("nonfinite_skip", skip_nonfinite=True, **overrides)
  skipped.wait()
  return stopped, skipped


def test_nonfinite_step_stops_the_run(diverged):
  stopped, _ = diverged
  assert stopped.process.returncode != 0
  assert re.search(r"FloatingPointError: non-finite loss or gradient at step 2\b",
                   stopped.stderr), stopped.output()
  # The checkpoint saved just before is complete, and finite.
  assert checkpoint_steps(stopped.workdir) == [1]
  state = load_state(stopped.workdir, 1)
  assert int(state["step"]) == 1 and all_finite(state)


def test_nonfinite_steps_skipped_when_asked(diverged):
  _, skipped = diverged
  assert skipped.process.returncode == 0, skipped.output()
  lines = skipped.train_lines()
  assert [e["step"] for e in lines] == list(range(1, 7))
  assert [e["nonfinite_steps"] for e in lines] == [0, 1, 1, 1, 1, 1]
  state = load_state(skipped.workdir, 6)
  assert int(state["step"]) == 6 and all_finite(state)


def test_processes_stop_together_at_the_next_log_step(cli):
  """Two processes (a device each): SIGTERM reaches process 0 at step 3 and process 1
  at step 6. Both train on to step 8, the next log step, where they compare their
  signals; both save step 8 and exit 0, and the same command resumes there."""
  overrides = dict(log_every_steps=8, checkpoint_every_steps=1000)

  def start(pause_steps) -> list[Run]:
    port = portpicker.pick_unused_port()
    return [cli("two_processes", pause_at=pause, args=(
        "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2",
        "--process_id", str(i)), **overrides) for i, pause in enumerate(pause_steps)]

  stopped = start((3, 6))
  try:
    for run in stopped:
      run.wait_paused()
      run.process.send_signal(signal.SIGTERM)
    assert [run.wait() for run in stopped] == [0, 0], "\n".join(r.output() for r in stopped)
  finally:  # A process left waiting for its peer (the hang this test is about) ends too.
    for run in stopped:
      if run.process.poll() is None:
        run.process.kill()
  assert "SIGTERM (process 0, 1): saved a checkpoint at step 8" in stopped[0].stdout, (
      stopped[0].output())
  assert checkpoint_steps(stopped[0].workdir) == [8]
  assert stopped[0].logged_steps() == [8]
  resumed = start((None, None))
  assert [run.wait() for run in resumed] == [0, 0], "\n".join(r.output() for r in resumed)
  assert resumed_step(resumed[0].stdout) == 8, resumed[0].output()
  assert checkpoint_steps(resumed[0].workdir) == [8, STEPS]


def test_images_per_sec_leaves_out_an_evaluation_between_logs(config, tmp_path, monkeypatch):
  """On a fake clock each train step takes 10 s and the evaluation at step 3 (not a
  log step) 1000 s: the log at step 5 reports batch_size / 10 images/s."""
  now = [0.0]
  clock = lambda: now[0]
  monkeypatch.setattr(trainer, "time", types.SimpleNamespace(time=clock, perf_counter=clock,
                                                             monotonic=clock))
  next_batch, evaluate = prefetch.DevicePrefetcher.__next__, trainer.Trainer.evaluate

  def slow_next_batch(self):
    now[0] += 10
    return next_batch(self)

  def slow_evaluate(self, *args):
    now[0] += 1000
    return evaluate(self, *args)

  monkeypatch.setattr(prefetch.DevicePrefetcher, "__next__", slow_next_batch)
  monkeypatch.setattr(trainer.Trainer, "evaluate", slow_evaluate)
  config.num_train_steps, config.log_every_steps, config.eval_every_steps = 5, 5, 3
  config.checkpoint_every_steps = 100
  trainer.train_and_evaluate(config, str(tmp_path))
  with open(tmp_path / "metrics.jsonl") as f:
    train = [e for e in map(json.loads, f) if e["split"] == "train"]
  assert [e["step"] for e in train] == [5]
  # Steps 2 to 5 (step 1 compiles) in 40 s of training.
  assert train[0]["images_per_sec"] == pytest.approx(4 * config.batch_size / 40)


def test_second_run_on_a_workdir_in_use_refuses(reference):
  run, intruder, overlapped = reference
  assert overlapped, "the first run ended before the second one tried its workdir"
  assert intruder.process.returncode == 2
  # One line for a person, no traceback.
  assert re.search(rf"^error: {re.escape(run.workdir)} is in use by another "
                   rf"training run \(pid {run.process.pid}\)", intruder.stderr,
                   re.MULTILINE), intruder.output()
  assert "Traceback" not in intruder.stderr
  # The first run trained, logged and saved every step as if alone.
  assert run.logged_steps() == list(range(1, STEPS + 1))
  assert checkpoint_steps(run.workdir) == [12, 16, 20]


# The pieces, in-process.


class Position:
  """An iterator's checkpoint interface (as grain's handler calls it), and its position."""

  def __init__(self, position=0):
    self.position = position

  def get_state(self) -> bytes:
    return json.dumps({"position": self.position}).encode()

  def set_state(self, state: bytes) -> None:
    self.position = json.loads(state)["position"]

  def start_prefetch(self) -> None:
    pass


def save_one(workdir, step, state, position):
  manager = checkpointing.create_manager(workdir, 3)
  checkpointing.save(manager, step, state, Position(position))
  manager.close()


def test_without_a_restorable_checkpoint_the_data_position_stays(tmp_path):
  state = {"w": jnp.arange(4096.0)}
  save_one(tmp_path, 5, state, position=5)
  truncate_array_data(str(tmp_path / "checkpoints" / "5" / "state"))
  iterator, messages = Position(0), []
  manager, restored = checkpointing.restore_latest_valid(
      str(tmp_path), 3, state, iterator, messages.append)
  manager.close()
  assert restored is None
  assert iterator.position == 0
  assert len(messages) == 1 and f"{tmp_path}/checkpoints/5 is damaged" in messages[0]


def test_checkpoint_of_another_train_state_is_an_error_and_stays(tmp_path):
  save_one(tmp_path, 5, {"w": jnp.zeros(4096)}, position=5)
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match=r"checkpoints/5 holds a train state unlike.*float32\[4096\]"):
    checkpointing.restore_latest_valid(str(tmp_path), 3, {"w": jnp.zeros(100)}, Position(0),
                                       print)
  assert checkpoint_steps(tmp_path) == [5]


class OtherSource(Position):
  """An iterator over another data source: grain refuses the saved position."""

  def set_state(self, state: bytes) -> None:
    raise ValueError("DataSource in checkpoint does not match datasource in dataloader.")


def test_checkpoint_of_another_data_source_is_an_error_and_stays(tmp_path):
  state = {"w": jnp.arange(4096.0)}
  save_one(tmp_path, 5, state, position=5)
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match=r"checkpoints/5: the train state restores but the data loader's "
                           r"position does not \(ValueError: DataSource in checkpoint"):
    checkpointing.restore_latest_valid(str(tmp_path), 3, state, OtherSource(0), print)
  assert checkpoint_steps(tmp_path) == [5]


def test_checkpoint_with_grain_iterator_state_resumes_at_the_batch_of_its_step(tmp_path):
  """Checkpoints written when the data position was grain's, per process."""
  import grain
  state = {"w": jnp.arange(4096.0)}
  manager = ocp.CheckpointManager(tmp_path / "checkpoints", item_names=("state", "data"),
                                  options=ocp.CheckpointManagerOptions(create=True))
  manager.save(5, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          data=grain.checkpoint.CheckpointSave(Position(9))))
  manager.wait_until_finished()
  manager.close()

  class Recorder(Position):
    def set_state(self, state: bytes) -> None:
      self.position = json.loads(state)

  iterator, messages = Recorder(0), []
  manager, restored = checkpointing.restore_latest_valid(str(tmp_path), 3, state, iterator,
                                                         messages.append)
  manager.close()
  assert restored is not None and iterator.position == {"batches": 5}
  assert len(messages) == 1 and "grain iterator" in messages[0], messages


def test_second_stop_signal_acts_at_once(monkeypatch):
  """A repeat within REPEAT_AFTER_S is the same stop; a later one is passed on."""
  now = [100.0]  # The handler's clock, moved by the test: no sleeping, no race.
  monkeypatch.setattr(run_control.StopSignal, "clock", staticmethod(lambda: now[0]))
  passed_on = []
  original = signal.signal(signal.SIGINT, lambda signum, frame: passed_on.append(signum))
  try:
    with run_control.StopSignal() as stop:
      # signal.raise_signal runs the Python handler before it returns.
      signal.raise_signal(signal.SIGINT)
      now[0] += run_control.StopSignal.REPEAT_AFTER_S / 2
      signal.raise_signal(signal.SIGINT)
      assert stop.received == "SIGINT" and passed_on == []
      now[0] += run_control.StopSignal.REPEAT_AFTER_S
      signal.raise_signal(signal.SIGINT)
      assert passed_on == [signal.SIGINT]
  finally:
    signal.signal(signal.SIGINT, original)


def in_thread(function, timeout=10):
  """function()'s result or exception, or a failure if it is still running after `timeout` s."""
  result = {}

  def call():
    try:
      result["value"] = function()
    except BaseException as error:  # pylint: disable=broad-except
      result["error"] = error

  thread = threading.Thread(target=call, daemon=True)
  thread.start()
  thread.join(timeout)
  assert not thread.is_alive(), f"{function} still running after {timeout} s"
  return result


def test_prefetcher_reader_error_is_raised_on_every_call_and_close_returns():
  class TwoBatches(Position):
    def __init__(self):
      super().__init__()
      self.raised = threading.Event()  # Set once the second batch is queued.

    def __next__(self):
      if self.position == 2:
        self.raised.set()
        raise ValueError("unreadable record")
      self.position += 1
      return {"image": np.full((1, 2, 2, 3), self.position, np.uint8)}

  sharding = sharding_lib.batch_sharding(sharding_lib.create_mesh())
  batches = TwoBatches()
  prefetcher = prefetch.DevicePrefetcher(batches, sharding, size=1)
  assert int(next(prefetcher)["image"][0, 0, 0, 0]) == 1
  assert batches.raised.wait(10)  # The second batch fills the queue; the error waits for room.
  assert prefetcher.get_state() == Position(1).get_state()
  assert int(in_thread(lambda: next(prefetcher))["value"]["image"][0, 0, 0, 0]) == 2
  for _ in range(2):
    assert isinstance(in_thread(lambda: next(prefetcher))["error"], ValueError)
  in_thread(prefetcher.close)

  batches = TwoBatches()
  prefetcher = prefetch.DevicePrefetcher(batches, sharding, size=1)
  next(prefetcher)
  assert batches.raised.wait(10)
  in_thread(prefetcher.close)  # The reader waits with its error for room in a full queue.
