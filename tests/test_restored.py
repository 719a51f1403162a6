"""What evaluate, predict and export restore from a run's workdir: the inference variables
only, with the config that trained the checkpoint; and the images predict reads."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from segjax.training import checkpointing, outputs, restored, train_state
from tiny_run import write_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A run with an EMA, resumed at step 6 with a changed config (eval.flip, max_to_keep)."""
  workdir = str(tmp_path_factory.mktemp("run"))
  config, state = write_run(workdir, steps=(6, 8), ema_decay=0.5)
  resumed = config.copy_and_resolve_references()
  resumed.eval.flip = True
  resumed.max_to_keep = 5
  outputs.write_config(resumed, workdir, 6)  # As a resumed run writes it.
  assert os.path.exists(os.path.join(workdir, "config_resumed_at_step_6.json"))
  return workdir, state


def test_restores_the_moving_average_and_statistics_and_no_optimizer_state(run, tmp_path,
                                                                             monkeypatch):
  workdir, state = run
  # A copy whose config names another optimizer: the saved optimizer state no longer fits
  # the state the config builds, and restoring it whole was a CheckpointMismatchError.
  copy = str(tmp_path / "run")
  shutil.copytree(workdir, copy)
  for name in ("config.json", "config_resumed_at_step_6.json"):
    with open(os.path.join(copy, name)) as f:
      stored = json.load(f)
    stored["optimizer"].update(name="sgd", momentum=0.0)
    with open(os.path.join(copy, name), "w") as f:
      json.dump(stored, f)
  monkeypatch.setattr(checkpointing, "restore", None)  # The whole train state: not used.
  loaded = restored.restore(copy, 6)
  assert not hasattr(loaded, "state") and not hasattr(loaded, "opt_state")
  assert set(loaded.variables) == {"params", "batch_stats"}
  expected = train_state.inference_variables(state)  # The EMA parameters (params / 2).
  flat = lambda tree: {jax.tree_util.keystr(p): np.asarray(x)
                       for p, x in jax.tree_util.tree_leaves_with_path(tree)}
  got, want = flat(loaded.variables), flat(expected)
  assert got.keys() == want.keys() and len(got) > 10
  for key in want:
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert got[key].dtype == want[key].dtype
  assert all(x.devices() == {jax.local_devices()[0]} for x in jax.tree.leaves(loaded.variables))


def test_another_model_is_a_mismatch(run, tmp_path):
  workdir, _ = run
  copy = str(tmp_path / "run")
  shutil.copytree(workdir, copy)
  for name in ("config.json", "config_resumed_at_step_6.json"):
    with open(os.path.join(copy, name)) as f:
      stored = json.load(f)
    stored["model"]["width_multiplier"] = 0.25
    with open(os.path.join(copy, name), "w") as f:
      json.dump(stored, f)
  with pytest.raises(checkpointing.CheckpointMismatchError, match=r"arrays differ, e\.g\."):
    restored.restore(copy, 6)


def test_a_resumed_runs_changed_config_serves_the_steps_it_trained(run):
  """Steps after the resume at 6 were trained with config_resumed_at_step_6.json."""
  from segjax import predict
  workdir, _ = run
  assert restored.restore(workdir).config.eval.flip  # The latest checkpoint, 8.
  assert restored.restore(workdir, 8).config.max_to_keep == 5
  assert not restored.restore(workdir, 6).config.eval.flip  # Trained before the resume.
  assert outputs.read_run(workdir)[0].eval.flip  # The latest written config.
  assert not outputs.read_run(workdir, 6)[0].eval.flip
  assert predict.Predictor(workdir).segmenter.options.flip  # As evaluate and export do.


def write_rgba(path):
  """4x4 RGBA: a white checkerboard under alpha 0 on the left half; (10, 20, 30) opaque on
  the right half but one pixel (200, 100, 50) at alpha 128."""
  rgba = np.zeros((4, 4, 4), np.uint8)
  rgba[:, :2, :3] = np.where((np.arange(4)[:, None] + np.arange(2)) % 2 == 0, 255, 0)[..., None]
  rgba[:, 2:] = (10, 20, 30, 255)
  rgba[1, 3] = (200, 100, 50, 128)
  Image.fromarray(rgba, "RGBA").save(path)


def test_predict_composites_transparency_on_black_as_training_does(run, tmp_path):
  from segjax import predict
  path = str(tmp_path / "rgba.png")
  write_rgba(path)
  # By hand: colour * alpha / 255, rounded: 200*128/255 = 100.4 -> 100, 50.2 -> 50, 25.1 -> 25.
  expected = np.zeros((4, 4, 3), np.uint8)
  expected[:, 2:] = (10, 20, 30)
  expected[1, 3] = (100, 50, 25)
  np.testing.assert_array_equal(predict.read_image(path), expected)
  # One channel (dataset.grayscale): PIL's luma of the composite, 0.299 R + 0.587 G +
  # 0.114 B: 100, 50, 25 -> 62.1 -> 62; 10, 20, 30 -> 18.15 -> 18.
  gray = predict.read_image(path, 1)
  assert gray.shape == (4, 4, 1) and gray[1, 3, 0] == 62 and gray[0, 3, 0] == 18
  assert not gray[:, :2].any()
  # And predict segments what it read: the same outputs as for the composite saved as RGB.
  workdir, _ = run
  Image.fromarray(expected).save(tmp_path / "composite.png")
  predictor = predict.Predictor(workdir)
  out = tmp_path / "out"
  assert predict.predict_paths(predictor, [path, str(tmp_path / "composite.png")], str(out),
                               probabilities=True) == []
  for suffix in ("mask", "overlay", "prob_skin"):
    np.testing.assert_array_equal(np.asarray(Image.open(out / f"rgba_{suffix}.png")),
                                  np.asarray(Image.open(out / f"composite_{suffix}.png")))


def test_a_stored_encoder_model_config_rebuilds_its_model(tmp_path):
  # A run's config.json for an FPN holds the base config's model.width_multiplier at its
  # default; read back over the base config, it rebuilds the FPN (it failed with "model 'fpn'
  # has no option model.width_multiplier"). Set to another value, the option is an error.
  from segjax import config as config_lib
  from segjax.models import encoder_decoder, factory

  config = config_lib.base_config()
  config.model.name = "fpn"
  config.model.encoder = "resnet18"
  os.makedirs(tmp_path / "run")
  outputs.write_config(config, str(tmp_path / "run"), 0)
  with open(tmp_path / "run" / outputs.LABELS_FILE, "w") as f:
    json.dump({"num_classes": 3, "num_channels": 3}, f)
  stored, _ = outputs.read_run(str(tmp_path / "run"))
  model = factory.create_model(stored, 3)
  assert isinstance(model, encoder_decoder.FPN) and model.encoder == "resnet18"
  stored.model.width_multiplier = 0.5
  with pytest.raises(ValueError, match="model 'fpn' has no option model.width_multiplier"):
    factory.create_model(stored, 3)


def test_a_run_resumed_again_with_its_changed_config_writes_no_new_file(tmp_path):
  # Resumed at 6 with a changed config, then resumed again with that same config at 8: the
  # config of step 8 is the latest written one, so nothing is written (it used to be compared
  # with config.json only, and wrote config_resumed_at_step_8.json). Back to the first config
  # at 10: that differs from the latest, so it is written.
  from segjax import config as config_lib
  first = config_lib.base_config()
  changed = config_lib.base_config()
  changed.eval.flip = True
  for config, step in ((first, 0), (changed, 6), (changed, 8), (first, 10)):
    outputs.write_config(config, str(tmp_path), step)
  assert sorted(os.listdir(tmp_path)) == ["config.json", "config_resumed_at_step_10.json",
                                          "config_resumed_at_step_6.json"]
