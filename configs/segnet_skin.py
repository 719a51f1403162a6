"""SegNet on skin segmentation (the skin-segmentation seed).

Command (CPU, no data needed: the synthetic skin dataset is generated on first use):
  python -m segjax.main --config configs/segnet_skin.py

Expected: about 7 minutes on a 2-core CPU (dataset generation included);
foreground F1 0.92 and mIoU 0.91 on the synthetic validation split
(experiments/segnet_skin_synthetic/).

The seed trained this network with Adam at 1e-4 on 40 real images; on the
synthetic data a warmup + cosine schedule from 1e-3 converges within the
CPU budget.
"""

from segjax import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.model.name = "segnet"
  config.dataset.name = "synthetic_skin"
  config.dataset.image_size = 64
  config.dataset.augmentations = ("flip",)
  config.batch_size = 8
  config.num_train_steps = 1000
  config.learning_rate = 1e-3
  config.lr_schedule = "warmup_cosine"
  return config
