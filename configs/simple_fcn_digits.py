"""The minimal fully convolutional net of the MNIST-over-CIFAR seed.

Command (offline, synthetic shapes, 4 classes):
  python -m segjax.main --config configs/simple_fcn_digits.py

The seed's data: an MNIST digit pasted at a random offset on a CIFAR-10 photo,
binary digit/background. Download the four MNIST files train-images-idx3-ubyte.gz,
train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz
(https://yann.lecun.com/exdb/mnist/) and cifar-10-python.tar.gz
(https://www.cs.toronto.edu/~kriz/cifar.html) into a folder DIR (or leave
source_dir empty to download them), then:
  python -m segjax.main --config configs/simple_fcn_digits.py \
    --config.dataset.name=mnist_on_cifar --config.dataset.source_dir=DIR \
    --config.dataset.image_size=32
  python -m segjax.evaluate --workdir runs/simple_fcn_digits --split test
Training evaluates on the validation split (10% of the MNIST and CIFAR-10 train
files, held out), the second command scores the test split once.
Not measured here (neither dataset is on the test machine).
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
