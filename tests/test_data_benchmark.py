"""The input-pipeline benchmark measures a loader and reports rates."""

import numpy as np

from segjax import config as config_lib
from segjax.data import benchmark


def test_measure_in_process():
  config = config_lib.base_config()
  config.batch_size = 2
  config.dataset.image_size = 16
  config.dataset.augmentations = ("flip", "scale_crop", "color_jitter")
  rng = np.random.default_rng(0)
  source = [{"image": rng.integers(0, 256, (20, 20, 3), dtype=np.uint8),
             "mask": rng.integers(0, 2, (20, 20, 1), dtype=np.uint8)} for _ in range(8)]
  result = benchmark.measure(source, config, workers=0, num_batches=3, warmup_batches=1)
  assert result["workers"] == 0 and result["images"] == 6
  assert result["images_per_s"] > 0 and result["images_per_cpu_s"] > 0
