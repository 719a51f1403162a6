"""FCN8 with a VGG16 encoder and BatchNorm (the SSNets seed, conv_type="conv").

Command (offline, synthetic shapes, 4 classes):
  python -m segjax.main --config configs/fcn8.py

134,498,207 parameters for 21 classes (the seed quotes 124M). ImageNet VGG16
encoder: --config.model.pretrained=imagenet (Keras notop weights, downloaded or
--config.model.pretrained_path=FILE). The seed's L2 regularisation:
--config.optimizer.l2_regularization=5e-4.
Expected: validation mIoU 0.28 (pixel accuracy 0.80) after
100 steps, about 6 minutes on a 2-core CPU (experiments/fcn8_synthetic/).
"""

from segjax import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.model.name = "fcn8"
  config.model.conv_type = "conv"
  config.model.bn_momentum = 0.9       # Keras' 0.99 (0.999) lags behind short runs.
  config.dataset.name = "synthetic_shapes"
  config.dataset.image_size = 64       # Divisible by 32.
  config.num_train_steps = 100        # 134M parameters: about 2.5 s per step on 2 CPU cores.
  config.eval_every_steps = 50
  return config
