"""MobileNetV2 encoder + pix2pix decoder U-Net (the SSNets seed / TF segmentation tutorial).

Command (offline, synthetic shapes, 4 classes):
  python -m segjax.main --config configs/mobilenetv2_unet_pets.py

Oxford-IIIT Pet as in the tutorial (trimap to 3 classes, 128x128, ImageNet
encoder). Download images.tar.gz and annotations.tar.gz from
https://www.robots.ox.ac.uk/~vgg/data/pets/ into a folder DIR (or leave
source_dir empty to download them), then:
  python -m segjax.main --config configs/mobilenetv2_unet_pets.py \
    --config.dataset.name=oxford_iiit_pet --config.dataset.source_dir=DIR \
    --config.dataset.image_size=128 --config.model.pretrained=imagenet
  python -m segjax.evaluate --workdir runs/mobilenetv2_unet_pets --split test
Training evaluates on the validation split (10% of trainval.txt, held out), the
second command scores the test split once. The encoder then gets the [-1, 1]
input its Keras weights expect, chosen automatically. Not measured here (no pet
data on the test machine).
Expected: validation mIoU 0.36 (pixel accuracy 0.84) after
600 steps, about 5 minutes on a 2-core CPU (experiments/mobilenetv2_unet_pets_synthetic/).
"""

from segjax import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.model.name = "mobilenetv2_unet"
  config.model.bn_momentum = 0.9       # Keras' 0.99 (0.999) lags behind short runs.
  config.dataset.name = "synthetic_shapes"
  config.dataset.image_size = 64       # Divisible by 32.
  config.num_train_steps = 600
  config.eval_every_steps = 300
  return config
