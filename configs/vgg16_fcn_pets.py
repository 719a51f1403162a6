"""Skip-layer FCN on VGG16 (the pets seed): transposed-conv branches from pools 3-5, summed.

Command (offline, synthetic shapes, 4 classes, encoder trained from scratch):
  python -m segjax.main --config configs/vgg16_fcn_pets.py

The seed's setup, a frozen ImageNet VGG16 on Oxford-IIIT Pet. Download
images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/
into a folder DIR (or leave source_dir empty to download them), then:
  python -m segjax.main --config configs/vgg16_fcn_pets.py \
    --config.dataset.name=oxford_iiit_pet --config.dataset.source_dir=DIR \
    --config.dataset.image_size=128 --config.model.pretrained=imagenet \
    '--config.model.frozen_patterns=("encoder/.*",)'
  python -m segjax.evaluate --workdir runs/vgg16_fcn_pets --split test
Training evaluates on the validation split (10% of trainval.txt, held out), the
second command scores the test split once.
The encoder then gets the input its Keras weights expect ("caffe": BGR, ImageNet
mean subtracted, 0..255), chosen automatically.
Offline there are no ImageNet weights, and a frozen random encoder is no
encoder, so this config trains it.
Expected: validation mIoU 0.46 (pixel accuracy 0.87) after
500 steps, about 16 minutes on a 2-core CPU (experiments/vgg16_fcn_pets_synthetic/).
"""

from segjax import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.model.name = "vgg16_skip_fcn"
  config.model.frozen_patterns = ()
  config.dataset.name = "synthetic_shapes"
  config.dataset.image_size = 64       # Divisible by 32.
  config.num_train_steps = 500
  config.eval_every_steps = 250
  # On CPU, the faster of XLA's default convolution kernels and Eigen's, timed
  # at start-up: Eigen's, by 1.05x, on the benchmark machine
  # (experiments/performance.md, "Convolution gradients").
  config.cpu_conv_kernels = "autotune"
  return config
