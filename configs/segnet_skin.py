"""SegNet on skin segmentation (the skin-segmentation seed).

Command (CPU, no data needed: the synthetic skin dataset is generated on first use):
  python -m segjax.main --config configs/segnet_skin.py

SegNet at half the seed's widths (2.9M parameters, a quarter of the FLOPs),
1000 steps at batch 8 on 64x64 images. Expected: foreground F1 0.927 and
mIoU 0.921 on the synthetic validation split in 8 min 6 s, dataset generation
included, measured once on an idle 2-core machine with a 128 GFLOP/s float32
matmul; longer on a machine shared with other jobs
(experiments/segnet_skin_synthetic/README.md: the measurement and its log).

The seed's data, SFA skin masks (a folder with images/, masks/ of 0/255 PNGs
and manifest.csv, whose orig_split column gives train and val), trained on
160x160 crops of the photos at their own aspect ratio (fitted into 384x288,
random rescale and colour jitter) and scored on the val part at the photos'
original 512x768 / 768x576 (the seed reports F1 0.90 at 480x640):
  python -m segjax.main --config configs/segnet_skin.py:PATH/skin_sfa
Expected there: skin F1 0.93, mIoU 0.91 on the 111 validation faces, in about
an hour on a busy 2-core CPU (experiments/skin_sfa_keep_ratio/). The squashed
96x96 training of before: --config.dataset.resize=squash
--config.dataset.image_size=96 (experiments/skin_sfa_squash96/).

The seed trained this network with Adam at 1e-4 on 40 real images; on the
synthetic data a warmup + cosine schedule from 1e-3 converges within the
CPU budget.
"""

from segjax import config as config_lib


def get_config(skin_sfa_dir: str = ""):
  """No argument: synthetic data; a folder: the SFA skin images and masks there."""
  config = config_lib.base_config()
  config.model.name = "segnet"
  config.model.widths = (64, 128, 256, 512)  # Encoder levels (the seed's); the decoder mirrors.
  config.dataset.name = "synthetic_skin"
  config.dataset.image_size = 64
  config.dataset.augmentations = ("flip",)
  config.batch_size = 8
  config.num_train_steps = 1000
  config.learning_rate = 1e-3
  config.lr_schedule = "warmup_cosine"
  if skin_sfa_dir:
    config_lib.sfa_skin(config, skin_sfa_dir)
    # A quarter of SegNet's width: 1000 steps fit 40 minutes on a busy 2-core CPU.
    config.model.width_multiplier = 0.25
    config.num_train_steps = 260
    config.eval_every_steps = 260
    config.checkpoint_every_steps = 50
  else:
    # Half the seed's widths (a quarter of its FLOPs): the synthetic data needs no more,
    # and the first run then fits a few minutes on a 2-core CPU.
    config.model.width_multiplier = 0.5
  return config
