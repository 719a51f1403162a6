"""The pieces of the training workflow, in-process: config checks and user errors,
per-class reports, the best checkpoint, metrics.jsonl after a resume, the model summary."""

import json
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from segjax import cli
from segjax.data import DatasetError
from segjax.inference import class_report
from segjax.scoring import metrics
from segjax.training import checkpointing, config_check, writers


def test_bad_values_are_listed_with_their_keys(config):
  config.learning_rate = -1.0
  config.max_to_keep = 0
  config.best_metric = "miou"
  config.model.name = "segnett"
  with pytest.raises(config_check.ConfigError) as raised:
    config_check.check(config)
  message = str(raised.value)
  for expected in ("learning_rate=-1.0 must be > 0", "max_to_keep=0 must be >= 1",
                   "best_metric='miou' is not an evaluation metric", "unknown model 'segnett'"):
    assert expected in message


def test_image_size_the_model_cannot_take_names_its_stride(config):
  config_check.check(config)  # 32 is fine.
  config.dataset.image_size = 65
  with pytest.raises(config_check.ConfigError,
                     match=r"dataset.image_size=65: model 'segnet' on 65x65 images .*"
                           r"multiple of its total stride 16, e\.g\. 64"):
    config_check.check(config)


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(capsys):
  try:
    try:
      raise DatasetError("mask masks/a.png is 30x40, its image 32x32")
    except DatasetError as error:
      raise RuntimeError("reading the split failed") from error
  except RuntimeError as wrapped:
    assert cli.report(wrapped) == 2
  stderr = capsys.readouterr().err
  assert stderr.startswith("error: mask masks/a.png is 30x40") and "Traceback" not in stderr
  try:
    raise FileNotFoundError("x.json not found")
  except FileNotFoundError as error:
    assert cli.report(error, verbose=True) == 2
  assert "Traceback" in capsys.readouterr().err
  try:
    raise KeyError("a bug")
  except KeyError as bug:
    assert cli.user_error(bug) is None
  try:  # A bug while handling a user error is still a bug.
    try:
      raise FileNotFoundError("missing")
    except FileNotFoundError:
      raise KeyError("a bug")
  except KeyError as bug:
    assert cli.user_error(bug) is None


def test_per_class_metrics_and_report_files(tmp_path):
  confusion = np.array([[50, 10, 0], [5, 20, 5], [0, 0, 0]])  # Class 2 absent.
  values = metrics.per_class(confusion, ["sky", "road", "car"])
  assert values["iou/sky"] == pytest.approx(50 / 65)
  assert values["precision/road"] == pytest.approx(20 / 30)
  assert values["recall/road"] == pytest.approx(20 / 30)
  assert values["f1/sky"] == pytest.approx(100 / 115)
  # Car: never true, predicted 5 times.
  assert (values["precision/car"], values["iou/car"], values["f1/car"]) == (0, 0, 0)
  assert np.isnan(values["recall/car"])
  assert values["iou/road"] == pytest.approx(metrics.from_confusion_matrix(confusion)
                                             ["iou_per_class"][1])
  assert list(metrics.per_class(confusion, ["a"]))[0] == "iou/class_0"  # Wrong count: indices.
  table = class_report.table(confusion, ["sky", "road", "car"]).splitlines()
  assert table[0].split() == ["class", "pixels", "iou", "precision", "recall", "f1"]
  assert table[2].split() == ["sky", "60", "0.7692", "0.9091", "0.8333", "0.8696"]
  assert table[4].split() == ["car", "0", "0.0000", "0.0000", "-", "0.0000"]
  csv_path, png_path = class_report.save(confusion, ["sky", "road", "car"], str(tmp_path), "best")
  names, counts = class_report.read_csv(csv_path)
  assert names == ["sky", "road", "car"]
  np.testing.assert_array_equal(counts, confusion)
  picture = np.asarray(Image.open(png_path))
  assert picture.ndim == 3 and picture.shape[0] > 3 * 44 and picture.shape[1] > 3 * 44
  # The darkest cell is the fullest share: sky predicted as sky (50 of 60).
  blue = picture[..., 2].astype(int) - picture[..., 0]
  assert blue.max() > 80


def test_best_checkpoint_outlives_max_to_keep_and_is_named_best(tmp_path):
  workdir = str(tmp_path)
  manager = checkpointing.create_manager(workdir, 1)
  best = checkpointing.create_best_manager(workdir)
  checkpointing.save_best(best, 2, {"w": jnp.full(3, 2.0)}, {"metric": "f1", "value": 0.5,
                                                              "step": 2})
  for step in (2, 4, 6):
    checkpointing.save(manager, step, {"w": jnp.full(3, float(step))})
  checkpointing.wait_for_saves()
  manager.close()
  assert checkpointing.best_record(best) == {"metric": "f1", "value": 0.5, "step": 2}
  best.close()
  manager, step = checkpointing.open_checkpoint(workdir, checkpointing.parse_step("best"), 1)
  assert step == 2
  np.testing.assert_array_equal(
      checkpointing.restore(manager, step, {"w": jnp.zeros(3)})["w"], [2, 2, 2])
  manager.close()
  manager, step = checkpointing.open_checkpoint(workdir, checkpointing.parse_step(None), 1)
  assert step == 6  # The latest; steps 2 and 4 went with max_to_keep=1.
  manager.close()
  assert checkpointing.state_folder(workdir, "best").endswith(os.path.join("best", "2", "state"))
  with pytest.raises(ValueError, match="--step 'last'"):
    checkpointing.parse_step("last")
  with pytest.raises(FileNotFoundError, match="has no best checkpoint"):
    checkpointing.open_checkpoint(str(tmp_path / "other"), "best")


def _tensorboard_events(directory):
  """(step, purge marker?) of every event in a TensorBoard folder's files, read as TFRecords."""
  from tensorboardX.proto import event_pb2
  events = []
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name), "rb") as f:
      data = f.read()
    offset = 0
    while offset < len(data):
      length, = struct.unpack("<Q", data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      events.append((event.step, event.HasField("session_log") and
                     event.session_log.status == event.session_log.START))
  return events


def test_resumed_writer_drops_the_steps_it_redoes(tmp_path):
  workdir = str(tmp_path)
  writer = writers.MetricWriter(workdir)
  for step in (1, 2, 3, 4):
    writer.write(step, "train", {"loss": 1.0 / step})
  writer.write(3, "eval", {"mean_iou": 0.5})
  writer.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 5, "split": "tr')  # Killed while writing.
  writer = writers.MetricWriter(workdir, resume_step=3)  # The checkpoint of step 3.
  writer.write(4, "train", {"loss": 0.2})
  writer.close()
  lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert [(e["step"], e["split"]) for e in lines] == [(1, "train"), (2, "train"), (3, "train"),
                                                       (3, "eval"), (4, "train")]
  assert lines[-1]["loss"] == 0.2
  assert not os.path.exists(tmp_path / "metrics.jsonl.tmp")
  # TensorBoard hides the first process's events after step 3 (a START marker at step 4).
  assert (4, True) in _tensorboard_events(tmp_path / "tensorboard")


def test_summary_counts_parameters_frozen_ones_and_flops(config):
  from segjax.models import factory
  from segjax.training import model_summary, train_state
  config.optimizer.freeze = ("Conv_0/.*",)
  text = model_summary.summarize_config(config, 2, 3)
  model = factory.create_model(config, 2)
  state = train_state.abstract_train_state(config, model, (32, 32, 3))
  total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
  assert f"parameters: {total:,} ({total - 224:,} trainable, 224 frozen)" in text  # 3x3x3x8+8
  rows = text.splitlines()
  assert rows[1].split()[:2] == ["module", "type"]
  assert rows[3].split()[:3] == ["SegNet", "SegNet", "1x32x32x2"]
  assert rows[4].split()[:5] == ["Conv_0", "Conv", "1x32x32x8", "224", "0"]
  flops = float(text.split("32x32x3 image: ")[1].split()[0].replace(",", ""))
  # At least the convolutions' multiply-adds: Conv_0 alone is 2*32*32*8*27.
  assert flops > 2 * 32 * 32 * 8 * 27

