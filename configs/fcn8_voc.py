"""FCN8 with an ImageNet VGG16 encoder on PASCAL VOC 2012 segmentation (21 classes).

Data: the official `VOCtrainval_11-May-2012.tar` (host.robots.ox.ac.uk/pascal/VOC/
voc2012/, 1.9 GB; segjax.data.voc2012): train 1464 / val 1449 images, object
borders (255) ignored. Commands (ARG: the folder holding the tar, or `download`
to fetch it, checksummed, into dataset.data_dir):
  python -m segjax.main --config configs/fcn8_voc.py:ARG
  python -m segjax.evaluate --workdir runs/fcn8_voc_ARG --split validation
Without an argument it trains on the synthetic shapes (offline check of the setup).

Reference: FCN 67.2 mean IU on PASCAL VOC 2012, as quoted in the FCN seed (Long,
Shelhamer, Darrell; trained with extra annotations and scored on the test
server, so not directly comparable with this config's val split). The VGG16 encoder starts from Keras' ImageNet weights, fed the
"caffe" input they expect (chosen automatically); SGD with momentum and the
seed's L2 of 5e-4, images resized to 320x320. A GPU-sized run; Expected: not
measured (no VOC and no GPU here), the numbers above are the target.
"""

from segjax import config as config_lib


def get_config(voc_dir: str = ""):
  """No argument: synthetic shapes; a folder with the tar, or `download`: VOC 2012."""
  config = config_lib.base_config()
  config.model.name = "fcn8"
  config.model.conv_type = "conv"
  config.model.bn_momentum = 0.9
  config.model.pretrained = "imagenet" if voc_dir else ""
  config.dataset.name = "voc2012" if voc_dir else "synthetic_shapes"
  config.dataset.source_dir = "" if voc_dir in ("", "download") else voc_dir
  config.dataset.image_size = 320      # Divisible by 32.
  config.dataset.augmentations = ("scale_crop", "flip")
  config.batch_size = 8
  config.num_train_steps = 20000       # About 110 epochs of the 1464 training images.
  config.optimizer.name = "sgd"
  config.optimizer.momentum = 0.9
  config.optimizer.l2_regularization = 5e-4
  config.learning_rate = 1e-3
  config.lr_schedule = "polynomial"
  config.eval_every_steps = 2000
  config.checkpoint_every_steps = 1000
  if not voc_dir:                      # The offline check: a few steps at 64x64.
    config.dataset.image_size = 64
    config.num_train_steps = 100
    config.eval_every_steps = 50
  return config
