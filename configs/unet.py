"""U-Net (Ronneberger et al. 2015; same padding, base 64 channels, depth 4).

Command (offline, synthetic shapes, 4 classes):
  python -m segjax.main --config configs/unet.py

Expected: validation mIoU 0.503 (pixel accuracy 0.890) after 600 steps, 7 min
34 s on a 2-core CPU (experiments/unet_synthetic/). On the LFW part labels at
64x64 (face-only target, 300 steps) it reached test pixel accuracy 0.9580 (RGB,
10 min 59 s) and 0.9587 (grayscale, 11 min 28 s) on an idle 2-core CPU:
experiments/lfw_parts_64/.
"""

from segjax import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.model.name = "unet"
  config.dataset.name = "synthetic_shapes"
  config.dataset.image_size = 64       # Divisible by 16.
  config.num_train_steps = 600
  config.eval_every_steps = 300
  # On CPU, time XLA's default convolution kernels against Eigen's at start-up
  # and train with the faster: Eigen's on the benchmark machine, by 1.18x at
  # these settings and 1.10x at 128x128, batch 4 (experiments/performance.md,
  # "Convolution gradients").
  config.cpu_conv_kernels = "autotune"
  return config
