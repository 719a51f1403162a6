"""A dataset without a validation split gets one held out of train: never test examples,
disjoint from the train split that remains, the same in every build with the same seed."""

import glob
import inspect
import os

import numpy as np
import pytest

from segjax import data as datasets
from segjax.data import sources
from segjax.data.images import DatasetError
from test_configs import REPO, load as load_config
from test_data_image_folder import folder_config, indices_of, write_pairs


def test_held_out_indices_are_disjoint_complete_and_drawn_from_the_seed():
  train, validation = sources.held_out_indices(100, seed=3)
  assert len(validation) == 10 and len(train) == 90
  assert sorted([*train, *validation]) == list(range(100))
  again = sources.held_out_indices(100, seed=3)
  np.testing.assert_array_equal(again[1], validation)
  assert list(sources.held_out_indices(100, seed=4)[1]) != list(validation)
  assert [len(part) for part in sources.held_out_indices(3, seed=0)] == [2, 1]
  with pytest.raises(DatasetError, match="too few to hold out"):
    sources.held_out_indices(1, seed=0)


def test_folder_without_validation_holds_one_out_of_train(tmp_path, capsys):
  """train/ (20 images) and test/ (5) folders: validation is 2 of the 20, never of test."""
  write_pairs(tmp_path / "src" / "train", range(20))
  write_pairs(tmp_path / "src" / "test", range(100, 105))

  def load(data_dir, **overrides):
    config = folder_config(tmp_path, tmp_path / "src", num_classes=3, **overrides)
    config.data_dir = str(tmp_path / data_dir)
    return datasets.load(config)

  data = load("tfds")
  train, validation = indices_of(data.train), indices_of(data.eval)
  assert len(validation) == 2 and len(train) == 18
  assert not set(train) & set(validation)
  assert sorted(train + validation) == list(range(20))  # Of train/, none of test/.
  assert ("image_folder has no validation split: 10% of its train split is held out as "
          "validation (dataset.split_seed=0): 18 train / 2 validation examples"
          in capsys.readouterr().out)
  # Another build from the same files and seed: the same parts, in the same order.
  rebuilt = load("tfds_again")
  assert (indices_of(rebuilt.train), indices_of(rebuilt.eval)) == (train, validation)
  assert repr(load("tfds").eval) == repr(data.eval) and " at 0x" not in repr(data.eval)
  assert indices_of(load("tfds", eval_split="test").eval) == list(range(100, 105))
  assert indices_of(load("tfds", split_seed=1).eval) != validation


def test_no_config_selects_on_test():
  """Every config, on its synthetic data and on the seed's (a folder argument), evaluates
  on validation while training; test is scored once, by `segjax.evaluate --split test`."""
  for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))):
    get_config = load_config(path).get_config
    arguments = [()] + ([("/data/seed",)] if inspect.signature(get_config).parameters else [])
    for args in arguments:
      dataset = get_config(*args).dataset
      assert (dataset.train_split, dataset.eval_split) == ("train", "validation"), (path, args)
