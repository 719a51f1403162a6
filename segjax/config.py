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

  # Every key of `model` but `name` is passed to the model's constructor.
  c.model = ml_collections.ConfigDict()
  c.model.name = "segnet"
  c.model.width_multiplier = 1.0

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "synthetic_skin"
  c.dataset.image_size = 64            # Training size; an int (square) or (height, width).
  c.dataset.data_dir = "~/tensorflow_datasets"  # Where prepared TFDS datasets are written.
  c.dataset.source_dir = ""            # Raw files of datasets built from a folder.
  c.dataset.train_split = "train"
  c.dataset.eval_split = "validation"
  c.dataset.ignore_index = 255         # Label value excluded from loss and metrics.
  c.dataset.normalization = "unit"      # unit | imagenet | per_image (segjax.data.normalize).
  c.dataset.augmentations = ("flip",)  # Names from segjax.data.augment, applied in order.
  c.dataset.num_workers = 0            # grain worker processes (0: in the main process).
  c.dataset.prefetch_batches = 2       # Batches placed on device ahead of the step.

  c.batch_size = 8                     # Global; must divide by the number of devices.
  c.eval_batch_size = 16
  c.num_train_steps = 1000
  c.dtype = "float32"                  # Compute dtype ("bfloat16": fp32 parameters).

  c.optimizer = "adam"                 # adam | adamw | sgd
  c.learning_rate = 1e-4
  c.lr_schedule = "constant"           # constant | warmup_cosine
  c.warmup_steps = 0
  c.weight_decay = 0.0                 # AdamW decoupled weight decay.

  c.loss = "softmax_cross_entropy"

  c.log_every_steps = 50
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 500
  c.max_to_keep = 3
  c.num_prediction_images = 4          # Validation images in each predictions/ grid.
  c.seed = 0
  return c
