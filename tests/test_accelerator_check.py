"""experiments/accelerator/check.sh: its CPU dry run, the device peaks and the summary table."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from segjax.runtime import device_peaks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Loaded under its own name: a plain `import benchmarks` would shadow the repository's
# benchmarks/ package (torch_models) for the rest of the test session.
_spec = importlib.util.spec_from_file_location(
    "accelerator_benchmarks", os.path.join(REPO, "experiments", "accelerator", "benchmarks.py"))
accelerator_benchmarks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(accelerator_benchmarks)


def test_dry_run_runs_every_step(tmp_path, tfds_dir):
  out = tmp_path / "check"
  env = dict(os.environ, PYTHON=sys.executable, JAX_PLATFORMS="cpu")
  done = subprocess.run(["bash", os.path.join("experiments", "accelerator", "check.sh"),
                         "--dry-run", "--out", str(out), "--data_dir", tfds_dir],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert "not in segjax.runtime.device_peaks" in (out / "environment.txt").read_text()  # A CPU.
  assert "tests/test_backend.py::" in (out / "tests.log").read_text()  # Collected.
  first_run = (out / "first_run.log").read_text()
  assert "final eval:" in first_run and "wall time:" in first_run
  results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
  assert [r["setting"] for r in results] == list(accelerator_benchmarks.DRY_RUN_SETTINGS)
  assert [r["model_ops"] for r in results] == ["auto", "rewritten"]
  for r in results:
    assert r["dtype"] == "bfloat16" and r["image_size"] == [32, 32]
    assert r["mfu"] > 0 and r["step_memory_bytes"] > 0 and r["compile_s"] > 0
    assert r["mfu_basis"] == "measured float32 matmul peak"
  assert (out / "summary.md").read_text().count("\n| ") == len(results)  # A row each.


def test_unknown_argument_is_named(tmp_path):
  done = subprocess.run(["bash", os.path.join("experiments", "accelerator", "check.sh"),
                         "--dryrun"], cwd=REPO, capture_output=True, text=True, timeout=60)
  assert done.returncode == 2 and "unknown argument '--dryrun'" in done.stderr


@pytest.mark.parametrize("kind, precision, tflops", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989.5), ("NVIDIA H100 PCIe", "tf32", 378.0),
    ("NVIDIA H200", "float32", 67.0), ("NVIDIA A100-SXM4-80GB", "bfloat16", 312.0),
    ("TPU v4", "bfloat16", 275.0), ("TPU v5 lite", "bfloat16", 197.0),
    ("TPU v5", "bfloat16", 459.0), ("TPU v4", "float32", None), ("cpu", "bfloat16", None)])
def test_device_peaks(kind, precision, tflops):
  peak = device_peaks.peak_flops(kind, precision)
  assert peak == (tflops * 1e12 if tflops else None)


def test_float32_is_measured_against_the_precision_xla_runs():
  assert device_peaks.peak_precision("gpu", "float32") == "tf32"
  assert device_peaks.peak_precision("tpu", "float32") == "bfloat16"
  assert device_peaks.peak_precision("gpu", "float32", "highest") == "float32"
  assert device_peaks.peak_precision("gpu", "bfloat16", "highest") == "bfloat16"


def test_summary_table_with_pytorch_columns():
  result = {"setting": "unet", "images_per_sec": 250.0, "mfu": 0.42, "useful_mfu": 0.45,
            "torch_images_per_sec": 200.0, "torch_mfu": 0.36, "ratio": 1.25, "compile_s": 31.0,
            "step_memory_bytes": 3 * 2**30, "torch_peak_memory_bytes": 2**31,
            "devices": 1, "device_kind": "NVIDIA H100 80GB HBM3", "backend": "gpu",
            "dtype": "bfloat16", "mfu_basis": "datasheet bfloat16 peak of 1 NVIDIA H100 80GB HBM3"}
  row = accelerator_benchmarks.summary_table([result]).splitlines()[2]
  assert row == ("| unet | 250.0 | 42.0% | 45.0% | 200.0 | 36.0% | 1.25 | 31.0 | 3.00 "
                 "| 2.00 |")
