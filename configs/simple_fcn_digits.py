"""The minimal fully convolutional net of the MNIST-over-CIFAR seed.

Command (offline, synthetic shapes, 4 classes):
  python -m segjax.main --config configs/simple_fcn_digits.py

The seed's data (TFDS mnist and cifar10 prepared as ArrayRecord; a digit
pasted at a random offset on a CIFAR image; binary digit/background):
  python -m segjax.main --config configs/simple_fcn_digits.py \
    --config.dataset.name=mnist_on_cifar --config.dataset.image_size=32
Expected: validation mIoU 0.22 (pixel accuracy 0.80) after
2000 steps, about 2 minutes on a 2-core CPU (experiments/simple_fcn_digits_synthetic/).
"""

from segjax import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.model.name = "simple_fcn"
  config.model.dropout_rate = 0.3      # The seed's keep probability 0.7.
  config.dataset.name = "synthetic_shapes"
  config.dataset.image_size = 64
  config.batch_size = 16
  config.num_train_steps = 2000
  return config
