"""FC-DenseNet with a Keras DenseNet backbone (the SSNets seed).

Command (offline, synthetic shapes, 4 classes):
  python -m segjax.main --config configs/fc_densenet.py

Backbones: --config.model.backbone=densenet121|densenet169|densenet201 (the
seed's default is 201; 121 here to fit a CPU), optional bottleneck
(--config.model.use_bottleneck=True), ImageNet encoder with
--config.model.pretrained=imagenet.
Expected: validation mIoU 0.38 (pixel accuracy 0.84) after 300 steps, about
6 minutes on a 2-core CPU, compilation included (experiments/fc_densenet_synthetic/).
"""

from segjax import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.model.name = "fc_densenet"
  config.model.backbone = "densenet121"
  config.model.use_bottleneck = False
  config.model.bn_momentum = 0.9       # Keras' 0.99 (0.999) lags behind short runs.
  config.dataset.name = "synthetic_shapes"
  config.dataset.image_size = 64       # Divisible by 32.
  config.num_train_steps = 300
  config.eval_every_steps = 150
  return config
