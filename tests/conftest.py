"""Shared fixtures: a prepared synthetic dataset and a small, fast config."""

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# One persistent compilation cache for the session, set before JAX is imported
# and inherited by the processes the tests start (`segjax.main` runs, multi-process
# checks): a program the suite compiles again, in-process or in a subprocess, is
# read back instead. A user's own JAX settings are left alone.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _compilation_cache = tempfile.mkdtemp(prefix="segjax-tests-jax-cache-")
  atexit.register(shutil.rmtree, _compilation_cache, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _compilation_cache
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

# The tests check results, not speed: on a CPU-only installation XLA compiles with
# LLVM's optimisation level 1 (compiling is most of the suite's time; library
# convolutions and matrix products are unaffected), unless XLA_FLAGS names a level.
# test_optim.py took 48 s at the default level, 42 s at 1 and 40 s at 0; at 0 the
# conv_autoencoder case of test_models.py trained to NaN, so 0 is not used.
_ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm7_plugin", "libtpu")
if ("xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", "")
    and os.environ.get("JAX_PLATFORMS", "cpu") == "cpu"
    and not any(importlib.util.find_spec(name) for name in _ACCELERATOR_PLUGINS)):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_backend_optimization_level=1").strip()

from segjax import config as config_lib  # noqa: E402

# The slowest files run first. The README's command spreads whole files over two
# processes (pytest-xdist, `--dist loadfile`) in this order: the long files start
# at once and the short ones fill in around them.
SLOWEST_FIRST = ("test_reliability.py", "test_sharding.py", "test_models.py", "test_train.py",
                 "test_accelerator_check.py")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # Stable within a file.


TEST_SPLITS = {"train": (0, 200), "validation": (1, 40)}  # {split: (split id, count)}


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """A TFDS data dir with the synthetic skin data, written once for the whole run.

  The dataset's own generator and files at a tenth of its size: 200 train and
  40 validation images (with `eval_batch_size` 16 the last batch is padded, as
  with the full 200). With pytest-xdist the workers share one directory; the
  first to get its lock prepares the data while the others wait for it.
  """
  import fcntl
  from unittest import mock

  from segjax import data
  from segjax.data import synthetic_skin
  if os.environ.get("PYTEST_XDIST_WORKER"):
    directory = tmp_path_factory.getbasetemp().parent / "tfds"
  else:
    directory = tmp_path_factory.mktemp("tfds")
  directory.mkdir(exist_ok=True)
  with open(directory.parent / "tfds.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    with mock.patch.object(synthetic_skin.SyntheticSkin, "SPLITS", TEST_SPLITS):
      data.load(small_config(str(directory)).dataset)
  return str(directory)


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
