"""`segjax.export` traces for the platforms it exports for, and fails on a file that predicts
other classes than segjax (a wrong ONNX graph, a wrong StableHLO function), naming the format.

SegNet at 1/8 width with drawn variables (its transposed convolutions take another
form on the CPU than elsewhere, segjax.runtime.model_ops), exported by
`artifacts.export_run` from a stand-in for a restored run.
"""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from segjax.export import artifacts, onnx_graph, stablehlo
from segjax.models import factory
from test_models import numpy_variables

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
LABELS = {"class_names": ["background", "skin"], "num_classes": 2, "num_channels": 3,
          "ignore_index": 255}


@pytest.fixture
def run(monkeypatch, tfds_dir):
  """export_run's restored run: SegNet (1/8 width, two levels) at 32x32, drawn variables."""
  from conftest import small_config
  config = small_config(tfds_dir)
  config.model.widths = (64, 128)
  model = factory.create_model(config, 2)
  restored = types.SimpleNamespace(config=config, labels=LABELS, model=model, step=6,
                                   variables=numpy_variables(model, (1, 32, 32, 3)),
                                   num_channels=3, num_classes=2)
  monkeypatch.setattr(artifacts.restored, "restore", lambda workdir, step: restored)
  return restored


def read(directory, fmt) -> dict:
  with open(directory / fmt / "model.json") as f:
    return json.load(f)


def test_traced_for_each_platform_and_checked_on_photo_like_images(run, tmp_path):
  artifacts.export_run(str(tmp_path), str(tmp_path / "both"), platforms=("cpu", "cuda"),
                       log=lambda message: None)
  stablehlo_record, onnx_record = read(tmp_path / "both", "stablehlo"), read(tmp_path / "both",
                                                                             "onnx")
  assert stablehlo_record["platforms"] == ["cpu", "cuda"]
  assert stablehlo_record["model_ops"]["cpu"]["conv_transpose"] == "phases"
  assert stablehlo_record["model_ops"]["cuda"]["conv_transpose"] == "xla"
  assert onnx_record["model_ops"] == {"cpu": stablehlo_record["model_ops"]["cpu"]}
  # Two SegNet levels: a stride of 4; the other size is one stride taller, two wider.
  for record, sizes in ((stablehlo_record, [[32, 32], [36, 40]]), (onnx_record, [[32, 32]])):
    check = record["check"]
    assert check["passed"] and check["class_agreement"] >= artifacts.CHECK_AGREEMENT
    assert [checked["size"] for checked in check["sizes"]] == sizes
    assert all(checked["images"] == artifacts.CHECK_IMAGES + 1 for checked in check["sizes"])

  # For a GPU only, from this CPU machine: XLA's forms (no CPU rewrite) in the file, and
  # the check runs its function lowered for the CPU.
  artifacts.export_run(str(tmp_path), str(tmp_path / "gpu"), formats=("stablehlo",),
                       platforms=("cuda",), log=lambda message: None)
  record = read(tmp_path / "gpu", "stablehlo")
  assert record["platforms"] == ["cuda"] and set(record["model_ops"]["cuda"].values()) == {"xla"}
  assert record["check"]["passed"] and "lowered for this machine's cpu" in record["check_note"]
  with open(tmp_path / "gpu" / "stablehlo" / "model.jax_export", "rb") as f:
    exported = artifacts.jax_export.deserialize(bytearray(f.read()))
  # lax.conv_transpose (an input-dilated convolution), not the CPU's phase convolutions.
  assert "lhs_dilate" in exported.mlir_module()


def test_photo_like_check_images_have_edges_and_texture():
  images = artifacts.check_images(4, (40, 56), 3, seed=1)
  assert images.shape == (5, 40, 56, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(images, artifacts.check_images(4, (40, 56), 3, seed=1))
  steps = np.abs(np.diff(images[:4].astype(int), axis=2)).max(-1)
  # Mostly smooth (neighbours within a few levels), with sharp edges between regions.
  assert np.median(steps) < 12 and (steps > 60).mean() > 0.002


def _noisy_weights(convert):
  def corrupted(*args, **kwargs):
    model = convert(*args, **kwargs)
    rng = np.random.default_rng(0)
    for initializer in model.graph.initializer:
      weights = onnx.numpy_helper.to_array(initializer)
      if weights.ndim == 4:  # Convolution kernels: noise as large as the weights.
        noisy = weights + rng.normal(0, weights.std() + 1e-3, weights.shape)
        initializer.CopyFrom(onnx.numpy_helper.from_array(noisy.astype(weights.dtype),
                                                          initializer.name))
    return model
  return corrupted


def _upside_down(export):
  return lambda fn, *args, **kwargs: export(lambda images: fn(images[:, ::-1]), *args, **kwargs)


@pytest.mark.parametrize("fmt", ["onnx", "stablehlo"])
def test_a_wrong_file_fails_the_export_naming_its_format(run, tmp_path, monkeypatch, fmt):
  if fmt == "onnx":
    monkeypatch.setattr(onnx_graph, "convert", _noisy_weights(onnx_graph.convert))
  else:
    monkeypatch.setattr(stablehlo, "export", _upside_down(stablehlo.export))
  with pytest.raises(artifacts.ExportError,
                     match=rf"segnet cannot be exported to {fmt}: the written file .* agree on "
                           r"[\d.]+% of the pixels .* below the 99.9% required"):
    artifacts.export_run(str(tmp_path), str(tmp_path / "out"), formats=(fmt,),
                         log=lambda message: None)
  check = read(tmp_path / "out", fmt)["check"]
  assert not check["passed"] and check["class_agreement"] < artifacts.CHECK_AGREEMENT


def test_inference_options_override_the_runs(run, tmp_path):
  # segjax.export --flip --scales --mode: the flip is in the graph, all three in model.json
  # (segjax.predict --export segments with them); the run's config is left as it was.
  run.config.eval_flip = True  # The older key, which --noflip overrides too.
  artifacts.export_run(str(tmp_path), str(tmp_path / "out"), formats=("stablehlo",),
                       log=lambda message: None,
                       inference={"flip": False, "scales": (0.5, 1.0), "mode": "slide"})
  record = read(tmp_path / "out", "stablehlo")
  assert record["flip"] is False and record["check"]["passed"]
  assert record["inference"]["mode"] == "slide" and record["inference"]["scales"] == [0.5, 1.0]
  assert run.config.eval_flip and run.config.eval.mode == "whole"
