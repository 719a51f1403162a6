"""FastFCN8: FCN8 with every convolution depthwise-separable (the SSNets seed, conv_type="ds").

Command (offline, synthetic shapes, 4 classes):
  python -m segjax.main --config configs/fastfcn8.py

20,826,426 parameters for 21 classes against FCN8's 134,498,207 (the seed:
"from 124M to 20M"). No ImageNet weights exist for the separable encoder.
Expected: validation mIoU 0.36 (pixel accuracy 0.83) after
400 steps, about 6 minutes on a 2-core CPU (experiments/fastfcn8_synthetic/).
"""

from segjax import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.model.name = "fcn8"
  config.model.conv_type = "ds"
  config.model.bn_momentum = 0.9       # Keras' 0.99 (0.999) lags behind short runs.
  config.dataset.name = "synthetic_shapes"
  config.dataset.image_size = 64
  config.num_train_steps = 400
  config.eval_every_steps = 200
  return config
