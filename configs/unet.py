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
  config.num_train_steps = 200
  config.eval_every_steps = 100
  return config
