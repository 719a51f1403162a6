"""U-Net (Ronneberger et al. 2015; same padding, base 64 channels, depth 4).

Command (offline, synthetic shapes, 4 classes):
  python -m segjax.main --config configs/unet.py

Expected: see experiments/README.md for measured results and hardware.
"""

from segjax import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.model.name = "unet"
  config.dataset.name = "synthetic_shapes"
  config.dataset.image_size = 64       # Divisible by 16.
  config.batch_size = 8
  config.num_train_steps = 1000
  config.learning_rate = 1e-3
  config.lr_schedule = "warmup_cosine"
  config.warmup_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  return config
