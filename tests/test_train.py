"""End to end: a few steps in a temporary workdir, every output, and resume."""

import glob
import json
import os

import numpy as np
import pytest

from segjax.models import factory
from segjax.training import train_state, trainer


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def checkpoint_steps(workdir):
  return sorted(int(name) for name in os.listdir(os.path.join(workdir, "checkpoints"))
                if name.isdigit())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tfds_dir):
  from conftest import small_config
  workdir = str(tmp_path_factory.mktemp("run"))
  config = small_config(tfds_dir)
  config.best_metric = "mean_iou"
  final = trainer.train_and_evaluate(config, workdir)
  return config, workdir, final


def best_eval(workdir) -> dict:
  """The logged evaluation with the highest mean IoU (the first of equals)."""
  evals = [e for e in read_metrics(workdir) if e["split"] == "eval"]
  return max(evals, key=lambda e: (e["mean_iou"], -e["step"]))


def test_run_writes_every_output(trained):
  config, workdir, final = trained
  assert checkpoint_steps(workdir) == [3, 6]
  events = read_metrics(workdir)
  train_lines = [e for e in events if e["split"] == "train"]
  eval_lines = [e for e in events if e["split"] == "eval"]
  assert [e["step"] for e in train_lines] == [2, 4, 6]
  assert [e["step"] for e in eval_lines] == [3, 6]
  for line in train_lines:
    assert line["images_per_sec"] > 0 and line["loss"] > 0
  for line in eval_lines:
    for key in ("loss", "pixel_accuracy", "mean_iou", "iou_per_class", "f1"):
      assert key in line
    assert len(line["iou_per_class"]) == 2
  assert final["pixel_accuracy"] == eval_lines[-1]["pixel_accuracy"]
  # Named per-class metrics, and the confusion matrix of the last evaluation.
  for line in eval_lines:
    assert line["iou/skin"] == pytest.approx(line["iou_per_class"][1])
    assert line["f1/skin"] == pytest.approx(line["f1"])
    assert 0 <= line["precision/background"] <= 1 and 0 <= line["recall/skin"] <= 1
  from segjax.inference import class_report
  names, confusion = class_report.read_csv(os.path.join(workdir, "confusion", "final.csv"))
  assert names == ["background", "skin"]
  assert confusion.trace() / confusion.sum() == pytest.approx(final["pixel_accuracy"])
  # The best evaluation is marked, kept apart and pictured.
  best = best_eval(workdir)
  assert [e["step"] for e in eval_lines if e.get("new_best")][-1] == best["step"]
  assert os.listdir(os.path.join(workdir, "checkpoints", "best")) == [str(best["step"])]
  _, best_confusion = class_report.read_csv(os.path.join(workdir, "confusion", "best.csv"))
  assert best_confusion.trace() / best_confusion.sum() == pytest.approx(best["pixel_accuracy"])
  assert os.path.exists(os.path.join(workdir, "confusion", "best.png"))
  with open(os.path.join(workdir, "model_summary.txt")) as f:
    assert "FLOPs per forward pass of one 32x32x3 image" in f.read()
  assert glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
  assert sorted(os.listdir(os.path.join(workdir, "predictions"))) == [
      "step_0000003.png", "step_0000006.png"]
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["num_train_steps"] == config.num_train_steps
  with open(os.path.join(workdir, "labels.json")) as f:
    assert json.load(f)["class_names"] == ["background", "skin"]


def test_second_invocation_resumes_at_saved_step(trained, capsys):
  config, workdir, _ = trained
  before = read_metrics(workdir)
  best_before = best_eval(workdir)
  config = config.copy_and_resolve_references()
  config.num_train_steps = 8
  config.eval_every_steps = 4
  config.init_from = workdir  # Not applied on resume: the workdir's checkpoint wins.
  trainer.train_and_evaluate(config, workdir)
  out = capsys.readouterr().out
  assert "resumed from" in out and "initialised from" not in out
  assert f"best mean_iou so far: {best_before['mean_iou']:.4f} at step {best_before['step']}" in out
  assert out.splitlines()[-3].split()[0] == "background"  # The per-class table.
  assert out.splitlines()[-2].split()[0] == "skin"
  after = read_metrics(workdir)
  assert after[:len(before)] == before  # Nothing overwritten.
  new = after[len(before):]
  assert min(e["step"] for e in new) > 6
  assert [e["step"] for e in new if e["split"] == "eval"] == [8]
  assert checkpoint_steps(workdir) == [3, 6, 8]
  # The changed config is kept beside the original.
  assert os.path.exists(os.path.join(workdir, "config_resumed_at_step_6.json"))


def test_init_from_loads_what_fits_and_keeps_the_rest(trained, tmp_path):
  """Fine-tuning the best state to three classes: all but the classifier loads."""
  import jax
  import jax.numpy as jnp
  from segjax.training import checkpointing, warm_start
  config, workdir, _ = trained
  config = config.copy_and_resolve_references()
  config.init_from, config.init_from_step = workdir, "best"
  model = factory.create_model(config, 3)
  # An initial state of known values (ones), without compiling the initialiser.
  initial = jax.tree.map(lambda x: jnp.ones(x.shape, x.dtype),
                         train_state.abstract_train_state(config, model, (32, 32, 3)))
  state = warm_start.load(config, initial, str(tmp_path), lambda message: None)
  source = checkpointing.read_variables(checkpointing.state_folder(workdir, "best"))
  flat = lambda tree: {jax.tree_util.keystr(p): np.asarray(x)
                       for p, x in jax.tree_util.tree_leaves_with_path(tree)}
  loaded = flat({"params": state.params, "batch_stats": state.batch_stats})
  fresh = flat({"params": initial.params, "batch_stats": initial.batch_stats})
  saved = flat(source)
  differing_shapes = {k for k in fresh if saved[k].shape != fresh[k].shape}
  assert differing_shapes and any("kernel" in k for k in differing_shapes)
  for key in fresh:
    np.testing.assert_array_equal(loaded[key],
                                  fresh[key] if key in differing_shapes else saved[key])
  with open(tmp_path / "init_from.json") as f:
    report = json.load(f)
  assert len(report["skipped_by_shape"]) == len(differing_shapes) and report["missing"] == []
  assert len(report["loaded"]) == len(fresh) - len(differing_shapes)
  assert state.opt_state is initial.opt_state  # The optimizer starts fresh.
  config.model.name = "unet"  # Nothing of a SegNet fits a U-Net.
  unet = factory.create_model(config, 2)
  with pytest.raises(warm_start.InitFromError, match="none of the .* arrays of model 'unet'"):
    warm_start.load(config, train_state.abstract_train_state(config, unet, (32, 32, 3)),
                    str(tmp_path), print)


def test_grayscale_loader_position_restores_in_a_new_load(config, tmp_path):
  """Grain checks a saved position against repr(data source): a grayscale run's
  wrapped source must describe itself the same way when loaded again."""
  import jax.numpy as jnp
  from segjax.training import checkpointing
  from segjax import data as datasets
  from segjax.data import pipeline
  config.dataset.grayscale = True
  loaders = [iter(pipeline.train_loader(datasets.load(config.dataset).train, config))
             for _ in range(2)]
  next(loaders[0])
  state = {"w": jnp.arange(8.0)}
  manager = checkpointing.create_manager(str(tmp_path), 3)
  checkpointing.save(manager, 1, state, loaders[0])
  manager.wait_until_finished()
  manager.close()
  messages = []
  manager, restored = checkpointing.restore_latest_valid(str(tmp_path), 3, state, loaders[1],
                                                         messages.append)
  manager.close()
  assert restored is not None and messages == []
  np.testing.assert_array_equal(next(loaders[1])["image"], next(loaders[0])["image"])


def test_eval_covers_split_exactly_once(trained, tfds_dir):
  """40 validation images in batches of 16: the padded last batch counts 8 images."""
  from segjax import evaluate
  _, workdir, _ = trained
  result = evaluate.evaluate(workdir, step=6)
  assert result["num_images"] == 40


def test_predict_writes_masks_at_original_size_and_names_bad_files(trained, tmp_path):
  from PIL import Image
  from segjax import predict
  _, workdir, _ = trained
  inputs = tmp_path / "in"
  inputs.mkdir()
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(inputs / "wide.png")
  Image.fromarray(rng.integers(0, 256, (33, 21), dtype=np.uint8)).save(inputs / "gray.jpg")
  (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
  predictor = predict.Predictor(workdir)
  errors = predict.predict_paths(predictor, predict.list_images(str(inputs)), str(tmp_path / "out"))
  assert len(errors) == 1 and "broken.png" in errors[0]
  mask = np.asarray(Image.open(tmp_path / "out" / "wide_mask.png"))
  assert mask.shape == (50, 70) and set(np.unique(mask)) <= {0, 1}
  assert np.asarray(Image.open(tmp_path / "out" / "gray_mask.png")).shape == (33, 21)
  assert np.asarray(Image.open(tmp_path / "out" / "wide_overlay.png")).shape == (50, 70, 3)
  with pytest.raises(FileNotFoundError, match="missing.png"):
    predict.list_images(str(inputs / "missing.png"))


def test_predict_command_line(trained, tmp_path):
  import subprocess
  import sys
  from PIL import Image
  _, workdir, _ = trained
  image = tmp_path / "face.png"
  Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(image)
  result = subprocess.run([sys.executable, "-m", "segjax.predict", "--workdir", workdir,
                           "--input", str(image), "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 0, result.stderr[-2000:]
  assert "1 of 1 images" in result.stdout
  assert (tmp_path / "out" / "face_mask.png").exists()


def write_test_folder(root, sizes, seed=0):
  """root/val/{images,masks}: random photos of `sizes` with 0/255 masks, PNG."""
  from PIL import Image
  rng = np.random.default_rng(seed)
  for sub in ("images", "masks"):
    (root / "val" / sub).mkdir(parents=True)
  for i, (height, width) in enumerate(sizes):
    image = rng.integers(0, 256, (height, width, 3), np.uint8)
    mask = np.where(image[..., 0] > 128, 255, 0).astype(np.uint8)
    Image.fromarray(image).save(root / "val" / "images" / f"img{i}.png")
    Image.fromarray(mask).save(root / "val" / "masks" / f"img{i}.png")


def test_evaluate_on_another_folder_equals_numpy_on_predicted_masks(trained, tmp_path):
  """evaluate's numbers on a folder of odd-sized photos are those of its predict's masks."""
  from PIL import Image
  from segjax import evaluate, predict
  from segjax.scoring import metrics
  _, workdir, _ = trained
  folder = tmp_path / "test_set"
  write_test_folder(folder, [(21, 35), (40, 26), (33, 47)])
  options = {"mode": "slide", "flip": True, "resize": "keep_ratio"}
  result = evaluate.evaluate(workdir, overrides={
      "dataset.name": "image_folder", "dataset.source_dir": str(folder),
      "dataset.split_file": "", "dataset.mask_encoding": "binary",
      "dataset.data_dir": str(tmp_path / "tfds"), "dataset.resize": "keep_ratio",
      "eval.mode": "slide", "eval.flip": True})
  assert (result["num_images"], result["mode"], result["flip"]) == (3, "slide", True)
  predictor = predict.Predictor(workdir, **options)
  out = tmp_path / "out"
  paths = predict.list_images(str(folder / "val" / "images"))
  assert predict.predict_paths(predictor, paths, str(out), probabilities=True) == []
  confusion = np.zeros((2, 2), np.int64)
  for path in paths:
    stem = os.path.splitext(os.path.basename(path))[0]
    truth = np.asarray(Image.open(folder / "val" / "masks" / f"{stem}.png")) // 255
    predicted = np.asarray(Image.open(out / f"{stem}_mask.png"))
    assert predicted.shape == truth.shape
    np.add.at(confusion, (truth.ravel(), predicted.ravel()), 1)
    foreground = np.asarray(Image.open(out / f"{stem}_prob_skin.png"))
    assert foreground.shape == truth.shape and ((foreground > 127) == (predicted == 1)).mean() > 0.99
  expected = metrics.from_confusion_matrix(confusion)
  for key in ("pixel_accuracy", "mean_iou", "f1"):
    assert result[key] == pytest.approx(expected[key], abs=1e-12), key
  with pytest.raises(ValueError, match=r"3 classes, the run .* predicts 2"):
    evaluate.evaluate(workdir, overrides={
        "dataset.name": "image_folder", "dataset.source_dir": str(folder),
        "dataset.split_file": "", "dataset.num_classes": 3,
        "dataset.data_dir": str(tmp_path / "tfds")})
  with pytest.raises(ValueError, match="only --config.dataset"):
    evaluate.evaluate(workdir, overrides={"model.name": "unet"})


def test_evaluate_reproduces_the_logged_eval(trained):
  from segjax import evaluate
  _, workdir, _ = trained
  logged = next(e for e in read_metrics(workdir) if e["split"] == "eval" and e["step"] == 6)
  result = evaluate.evaluate(workdir, step=6)
  assert (result["step"], result["split"], result["flip"]) == (6, "validation", False)
  assert result["pixel_accuracy"] == pytest.approx(logged["pixel_accuracy"], abs=1e-9)
  assert result["loss"] == pytest.approx(logged["loss"], rel=1e-5)
  with pytest.raises(FileNotFoundError, match=r"no checkpoint at step 5 in .*steps there"):
    evaluate.evaluate(workdir, step=5)


def test_evaluate_a_run_of_an_older_or_autotuning_config(trained, tmp_path, capsys):
  """Keys added since the run get their defaults; evaluating never tunes the train step."""
  import shutil
  from segjax import evaluate
  _, workdir, _ = trained
  copy = str(tmp_path / "run")
  shutil.copytree(workdir, copy)
  with open(os.path.join(copy, "config.json")) as f:
    stored = json.load(f)
  del stored["eval_flip"]  # Written before the keys existed.
  del stored["eval"]
  del stored["dataset"]["resize"]
  stored["cpu_conv_kernels"] = "autotune"
  with open(os.path.join(copy, "config.json"), "w") as f:
    json.dump(stored, f)
  capsys.readouterr()
  result = evaluate.evaluate(copy, step=6)
  assert "autotune" not in capsys.readouterr().out
  logged = next(e for e in read_metrics(workdir) if e["split"] == "eval" and e["step"] == 6)
  assert result["pixel_accuracy"] == pytest.approx(logged["pixel_accuracy"], abs=1e-9)
  del stored["cpu_conv_kernels"]
  with open(os.path.join(copy, "config.json"), "w") as f:
    json.dump(stored, f)
  from segjax.training import outputs
  config, _ = outputs.read_run(copy)
  assert (config.cpu_conv_kernels, config.eval_flip) == ("default", False)
  assert (config.eval.mode, config.dataset.resize) == ("whole", "squash")
  assert config.model.width_multiplier == stored["model"]["width_multiplier"]


def test_evaluate_command_line(trained, tmp_path):
  import subprocess
  import sys
  _, workdir, _ = trained
  output = tmp_path / "eval.json"
  command = [sys.executable, "-m", "segjax.evaluate", "--workdir", workdir, "--step", "best",
             "--flip", "--output", str(output)]
  run = lambda: subprocess.run(command, capture_output=True, text=True, timeout=300,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  result = run()
  assert result.returncode == 0, result.stderr[-2000:]
  last = json.loads(result.stdout.strip().splitlines()[-1])
  logged = best_eval(workdir)
  assert (last["step"], last["flip"]) == (logged["step"], True)
  assert 0 <= last["pixel_accuracy"] <= 1
  assert np.trace(last["confusion"]) / np.sum(last["confusion"]) == pytest.approx(
      last["pixel_accuracy"])
  table = result.stdout.splitlines()[-4:-1]  # The per-class table, then the JSON line.
  assert table[1].split()[0] == "background" and table[2].split()[0] == "skin"
  assert float(table[2].split()[2]) == pytest.approx(last["iou/skin"], abs=1e-4)
  assert last["loss"] != pytest.approx(logged["loss"], rel=1e-5)  # The flips change the logits.
  assert json.loads(output.read_text()) == last
  again = run()  # The result file is never overwritten.
  assert again.returncode != 0 and "exists" in again.stderr
  assert json.loads(output.read_text()) == last


def test_export_command_writes_files_that_run_without_segjax_models(trained, tmp_path):
  import subprocess
  import sys
  _, workdir, final = trained
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  output = tmp_path / "exported"
  result = subprocess.run([sys.executable, "-m", "segjax.export", "--workdir", workdir,
                           "--output", str(output), "--step", "6"],
                          capture_output=True, text=True, timeout=600, cwd=repo)
  assert result.returncode == 0, result.stderr[-2000:]
  for fmt, name in (("stablehlo", "model.jax_export"), ("onnx", "model.onnx")):
    with open(output / fmt / "model.json") as f:
      description = json.load(f)
    assert (output / fmt / name).exists() and description["step"] == 6
    assert description["metrics"]["pixel_accuracy"] == final["pixel_accuracy"]
    assert [c["name"] for c in description["classes"]] == ["background", "skin"]
    assert description["check"]["class_agreement"] >= 0.999  # Against segjax's prediction.
  assert description["input"]["size"]["fixed"] == [32, 32]  # ONNX
  # The loader needs jax alone: neither the models nor Orbax are imported.
  script = (
      "import sys, numpy as np, segjax.export as e\n"
      f"model = e.load({str(output)!r})\n"
      "classes = model(np.zeros((3, 48, 16, 3), np.uint8))\n"
      "assert classes.shape == (3, 48, 16) and classes.dtype == np.int32, classes.shape\n"
      "assert model.metadata['input']['size'] == {'multiple_of': 16}\n"
      "try:\n  model(np.zeros((1, 40, 16, 3), np.uint8))\nexcept ValueError as error:\n"
      "  assert 'multiples of 16' in str(error)\nelse:\n  raise AssertionError\n"
      "loaded = [m for m in sys.modules if m.startswith(('orbax', 'flax', 'segjax.models'))]\n"
      "assert not loaded, loaded\n")
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=repo)
  assert result.returncode == 0, result.stderr[-2000:]
  _check_predict_from_export(workdir, str(output))
  # A step without a checkpoint: one message and the status of a user error, no traceback.
  result = subprocess.run([sys.executable, "-m", "segjax.export", "--workdir", workdir,
                           "--output", str(tmp_path / "other"), "--step", "4"],
                          capture_output=True, text=True, timeout=300, cwd=repo)
  assert result.returncode == 2 and "no checkpoint at step 4" in result.stderr, result.stderr
  assert "Traceback" not in result.stderr


def _check_predict_from_export(workdir, export_dir):
  """segjax.predict from the StableHLO export segments as from the checkpoint it holds:
  a whole image at its own size (the export gets the same pixels), then one squashed
  as the run does (resized pixels rounded to uint8) in slide mode with flips."""
  from segjax import predict
  rng = np.random.default_rng(1)
  for options, size, least in (({"resize": "keep_ratio"}, (50, 70), 0.999),
                               ({"mode": "slide", "flip": True}, (33, 21), 0.98)):
    images = [(0, rng.integers(0, 256, size + (3,), dtype=np.uint8))]
    _, expected, _ = next(predict.Predictor(workdir, 6, **options).predict_many(images))
    exported = predict.Predictor.from_export(export_dir, **options)
    assert exported.segmenter.options.resize == options.get("resize", "squash")  # The run's.
    _, mask, probs = next(exported.predict_many(images, probabilities=True))
    assert mask.shape == expected.shape == size and probs.shape == size + (2,)
    assert np.mean(mask == expected) >= least, options
    np.testing.assert_allclose(probs.sum(-1), 1, atol=1e-5)
