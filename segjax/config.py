"""The config schema every config file starts from.

Config files in `configs/` call `base_config()` and override what they need;
`main.py` locks the result, so a mistyped key on the command line is an error
that names the key. Keys other code and users rely on:
`model.name`, `dataset.name`, `dataset.image_size`, `batch_size` (global),
`num_train_steps`, `learning_rate`, `eval_every_steps`,
`checkpoint_every_steps`, `max_to_keep`, `seed`.
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()

  # Every key of `model` but `name`, `pretrained`, `pretrained_path` and `num_outputs`
  # is passed to the model's constructor (segjax.models.build).
  c.model = ml_collections.ConfigDict()
  c.model.name = "segnet"
  c.model.width_multiplier = 1.0
  c.model.pretrained = ""              # "imagenet": Keras ImageNet weights into the encoder.
  c.model.pretrained_path = ""         # That weight file; "": download to ~/.cache/segjax/keras.
  # Logit channels: 0 = one per class (softmax); 1 = one sigmoid logit for a
  # two-class dataset (masks 0/1, same metrics), any model.
  c.model.num_outputs = 0

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "synthetic_skin"
  # Training crop in pixels: an int (square) or (height, width).
  c.dataset.image_size = ml_collections.FieldReference(64, field_type=object)
  c.dataset.resize = "squash"          # squash: every image resized to image_size (aspect
                                       # lost); keep_ratio: rescaled to fit `scale`, random
                                       # rescale by `scale_range`, random crop of image_size.
  c.dataset.scale = ()                 # keep_ratio: (long side, short side) each image is
                                       # fitted into (train and test); (): its own size.
  c.dataset.cat_max_ratio = 1.0        # keep_ratio: < 1 retries a crop (up to 10 times) where
                                       # one class covers more than this fraction.
  c.dataset.data_dir = "~/tensorflow_datasets"  # Where prepared TFDS datasets are written.
  c.dataset.source_dir = ""            # Raw files of datasets built from a folder.
  c.dataset.train_split = "train"
  c.dataset.eval_split = "validation"
  c.dataset.ignore_index = 255         # Label value excluded from loss and metrics.
  # "" (the pretrained weights' own, else unit) | unit | imagenet | caffe | per_image
  # (segjax.data.normalize).
  c.dataset.normalization = ""
  c.dataset.augmentations = ("flip",)  # Names from segjax.data.augment, applied in order.
  c.dataset.num_workers = 0            # grain worker processes (0: in the main process).
  c.dataset.sampler = "uniform"        # uniform | repeat_factor: images of rare classes more
                                       # often (segjax.data.sampling).
  c.dataset.repeat_threshold = 0.1     # repeat_factor: classes in fewer than this fraction
                                       # of the training images are oversampled.
  c.dataset.prefetch_batches = 2       # Batches placed on device ahead of the step.
  c.dataset.grayscale = False          # One-channel (luma) input images, any dataset.
  c.dataset.target = ""                # Labels of lfw_parts (face | face_hair | parts),
                                       # oxford_iiit_pet (trimap | binary), mnist_on_cifar
                                       # (binary | digits); "": the dataset's default.
  # image_folder (segjax.data.image_folder, segjax.data.images): labels, masks, splits.
  c.dataset.num_classes = 2
  c.dataset.class_names = ()           # One per class; empty: class_0, class_1, ...
  c.dataset.mask_encoding = "index"    # index | binary | palette | color | threshold.
  c.dataset.class_colors = ()          # mask_encoding="color": ((r, g, b), ...), one per class.
  c.dataset.mask_threshold = 127       # threshold (and lfw_parts): gray > this is class 1.
  c.dataset.split_ratios = (0.8, 0.1, 0.1)  # train/validation/test of one images/+masks/ pair.
  c.dataset.split_seed = 0             # Shuffle of the sorted file list before that split.
  c.dataset.split_file = ""            # Or a CSV (name, split) that lists each file's split.
  c.dataset.split_column = "split"     # The split_file column holding train | val | test.
  # Augmentation options (segjax.data.augment).
  c.dataset.hflip_prob = 0.5           # flip
  c.dataset.scale_range = (0.75, 1.5)  # scale_crop, affine, keep_ratio: zoom factors.
  c.dataset.translate_fraction = 0.1   # translate, affine: largest shift / size.
  c.dataset.rotation_degrees = 15.0    # rotate, affine
  c.dataset.shear_degrees = 5.0        # affine
  c.dataset.brightness = 0.2           # color_jitter, brightness: factor in 1 +- this.
  c.dataset.contrast = 0.2             # color_jitter, contrast
  c.dataset.saturation = 0.2           # color_jitter, saturation
  c.dataset.hue = 0.05                 # color_jitter, hue: +- this fraction of a turn.
  c.dataset.blur_prob = 0.2
  c.dataset.blur_sigma = (0.1, 1.5)    # Pixels.
  c.dataset.noise_prob = 0.2
  c.dataset.noise_std = 8.0            # Largest std of the noise, in uint8 levels.
  c.dataset.dropout_prob = 0.2
  c.dataset.dropout_rate = 0.05        # Fraction of pixels zeroed.
  c.dataset.grayscale_prob = 0.1       # grayscale augmentation (channels kept).

  # Device mesh: batches split over data x fsdp; fsdp > 1 also splits parameters
  # and optimizer state. data = -1: all devices fsdp leaves.
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1})

  c.batch_size = 8                     # Global; must divide by the number of devices.
  c.eval_batch_size = 16
  c.num_train_steps = 1000
  c.dtype = "float32"                  # Compute dtype ("bfloat16": fp32 parameters).
  c.grad_accum_steps = 1               # Micro-batches per step (batch_size divides by it).
  c.ema_decay = 0.0                    # > 0: evaluate an exponential moving average of params.
  # Inference of training-time evaluation, segjax.evaluate and segjax.predict
  # (segjax.inference.segmenter): images at their own size, scored at their original resolution.
  c.eval = ml_collections.ConfigDict()
  c.eval.mode = "whole"                # whole: padded whole images | slide: crop-size windows.
  c.eval.scales = (1.0,)               # Test-time scales (logits averaged), e.g. (0.75, 1, 1.25).
  c.eval.flip = False                  # True: also the mirror image's logits (averaged).
  c.eval.stride = ()                   # slide: window step, one size or (h, w); (): 2/3 window.
  c.eval.window_batch_size = 8         # slide: windows per network call.
  c.eval.max_shapes = 8                # whole: padded input shapes compiled at most.
  c.eval_flip = False                  # Older name of eval.flip (either switches it on).
  c.skip_nonfinite = False             # True: skip (and count) non-finite updates, else stop.
  c.cpu_conv_kernels = "default"       # CPU train step convolutions: default (XLA's choice) |
                                       # eigen | autotune (the faster; segjax.runtime.cpu_kernels).

  c.learning_rate = 1e-3
  c.lr_schedule = "warmup_cosine"      # constant | warmup_cosine | polynomial
  c.warmup_steps = 50
  c.lr_power = 0.9                     # polynomial: lr * (1 - t)^lr_power.
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"            # adam | adamw | sgd
  c.optimizer.weight_decay = 0.0       # adamw: decoupled weight decay.
  c.optimizer.l2_regularization = 0.0  # L2 penalty on kernels (Keras kernel_regularizer).
  c.optimizer.momentum = 0.9           # sgd
  c.optimizer.nesterov = False         # sgd
  # Learning rate of the model's `encoder` parameters relative to the rest (e.g. 0.1 to
  # fine-tune a pretrained encoder gently); 1.0: one learning rate for all.
  c.optimizer.encoder_lr_multiplier = 1.0
  # Parameter-path regexes ('/'-joined, e.g. "encoder/.*") kept fixed, BatchNorm
  # statistics included; added to the model's own `frozen_patterns`.
  c.optimizer.freeze = ()

  # The objective: a weighted sum of losses (segjax.scoring.losses); 0 switches one off.
  c.loss_weights = ml_collections.ConfigDict(
      {"cross_entropy": 1.0, "dice": 0.0, "focal": 0.0, "rmse": 0.0})
  # Per-class weights of pixel losses: a tuple (empty: all 1) or "median_frequency" |
  # "inverse_frequency", computed from the training masks (segjax.data.class_weights).
  c.class_weights = ml_collections.FieldReference((), field_type=object)
  c.focal_gamma = 2.0

  c.log_every_steps = 50
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 500
  c.max_to_keep = 3
  # Keep the best evaluated state in checkpoints/best: an evaluation metric
  # (mean_iou | f1 | pixel_accuracy), "-loss" for the lowest loss, "": none.
  c.best_metric = ""
  # Start from another run's weights: its workdir, checkpoints/ folder or one
  # checkpoint. Arrays whose path and shape match are loaded; optimizer fresh.
  c.init_from = ""
  c.init_from_step = ""                # "": latest; "best"; or a step number, e.g. "3000".
  c.num_prediction_images = 4          # Validation images in each predictions/ grid.
  c.seed = 0
  return c


def sfa_skin(config: ml_collections.ConfigDict, skin_sfa_dir: str) -> None:
  """Sets `config.dataset` to the SFA skin photos in `skin_sfa_dir` (images/, masks/ of
  0/255 PNGs, manifest.csv whose orig_split column gives train and val).

  Trained on 160x160 crops of the photos at their own aspect ratio (each fitted
  into 384x288, half its size, rescaled by a random factor in scale_range), with
  flips and colour jitter; evaluation runs each val photo whole at 384x288 (or
  288x384) and scores it at its original 512x768 / 768x576.
  """
  import os

  config.dataset.name = "image_folder"
  config.dataset.source_dir = skin_sfa_dir
  config.dataset.split_file = os.path.join(skin_sfa_dir, "manifest.csv")
  config.dataset.split_column = "orig_split"
  config.dataset.mask_encoding = "binary"
  config.dataset.class_names = ("background", "skin")
  config.dataset.resize = "keep_ratio"
  config.dataset.scale = (384, 288)
  config.dataset.scale_range = (0.5, 1.5)
  config.dataset.image_size = 160
  config.dataset.augmentations = ("flip", "color_jitter")
