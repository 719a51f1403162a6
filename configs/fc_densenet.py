"""FC-DenseNet with a Keras DenseNet backbone (the SSNets seed).

Command (offline, synthetic shapes, 4 classes):
  python -m segjax.main --config configs/fc_densenet.py

Backbones: --config.model.backbone=densenet121|densenet169|densenet201 (the
seed's default is 201; 121 here to fit a CPU), optional bottleneck
(--config.model.use_bottleneck=True), ImageNet encoder with
--config.model.pretrained=imagenet.
Expected: not measured yet. On a 2-core CPU, compiling the full densenet121
train step at 64x64 took over 4.5 minutes and 10.8 GB, and the run was stopped
before its first step (experiments/fc_densenet_synthetic/).
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
