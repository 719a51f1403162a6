"""Augmentations by name, applied on the host to uint8 numpy records.

A record is `{"image": uint8 (H, W, C), "mask": uint8 (H, W, 1)}`. Geometric
augmentations transform image and mask identically (bilinear for the image,
nearest for the mask) and keep the size; pixels brought in from outside the
image are 0 in the image and `dataset.ignore_index` in the mask, so they count
in no loss or metric. Photometric ones touch the image only. Each is a
function `(record, rng, config) -> record` where `rng` is a
`np.random.Generator` that grain derives from the seed and the record's
position, so a run's augmentations are reproducible. Options are
`dataset.*` keys:

geometric
  flip          horizontal flip with probability `hflip_prob`
  scale_crop    zoom by a factor drawn from `scale_range`, then a random
                window of the original size (zooming out pads)
  translate     shift by whole pixels, up to `translate_fraction` of the size
  rotate        rotate about the centre by up to +-`rotation_degrees`
  affine        one warp: rotation (`rotation_degrees`), zoom (`scale_range`),
                shear (+-`shear_degrees`), shift (`translate_fraction`)
photometric (for one-channel images, hue and saturation do nothing)
  color_jitter  brightness, contrast, saturation and hue together, in one pass
  brightness    multiply by a factor in 1 +- `brightness`
  contrast      scale the distance to the mean gray by 1 +- `contrast`
  saturation    scale the distance to the pixel's gray by 1 +- `saturation`
  hue           rotate hue by up to +-`hue` of a full turn (in YIQ space)
  blur          Gaussian blur, sigma from `blur_sigma`, probability `blur_prob`
  noise         additive Gaussian noise, std up to `noise_std` (uint8 levels),
                probability `noise_prob`
  dropout       zero a fraction `dropout_rate` of the pixels, probability
                `dropout_prob`
  grayscale     replace the colour by its gray (channels kept), probability
                `grayscale_prob`
"""

from __future__ import annotations

import math
from typing import Callable

import ml_collections
import numpy as np
from PIL import Image, ImageFilter

from segjax.data import resampling

Augmentation = Callable[[dict, np.random.Generator, ml_collections.ConfigDict], dict]
_AUGMENTATIONS: dict[str, Augmentation] = {}

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as PIL's "L".
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.595716, -0.274453, -0.321263],
                        [0.211456, -0.522591, 0.311135]], np.float64)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def register(name: str):
  def wrap(fn):
    _AUGMENTATIONS[name] = fn
    return fn
  return wrap


def names() -> list[str]:
  return sorted(_AUGMENTATIONS)


def get(name: str) -> Augmentation:
  if name not in _AUGMENTATIONS:
    raise ValueError(f"unknown augmentation {name!r} in dataset.augmentations; "
                     f"available: {', '.join(names())}")
  return _AUGMENTATIONS[name]


def _uniform_range(rng: np.random.Generator, bounds, key: str) -> float:
  low, high = (float(v) for v in bounds)
  if low > high:
    raise ValueError(f"dataset.{key}={tuple(bounds)}: the low end is above the high end")
  return float(rng.uniform(low, high))


# Geometric.

@register("flip")
def horizontal_flip(record, rng, config):
  if rng.random() < config.hflip_prob:
    record = {**record, "image": record["image"][:, ::-1], "mask": record["mask"][:, ::-1]}
  return record


def _to_pil_planes(image: np.ndarray) -> list[Image.Image]:
  image = np.ascontiguousarray(image)
  if image.shape[-1] == 3:
    return [Image.fromarray(image, "RGB")]
  return [Image.fromarray(np.ascontiguousarray(image[..., c]), "L")
          for c in range(image.shape[-1])]


def warp(record: dict, inverse: np.ndarray, ignore_index: int) -> dict:
  """Applies the affine map whose inverse (output -> input pixel coordinates, 2x3;
  continuous coordinates, pixel (i, j) covering [j, j+1) x [i, i+1)) is `inverse`."""
  image, mask = record["image"], record["mask"]
  height, width = image.shape[:2]
  data = tuple(float(v) for v in np.asarray(inverse).reshape(-1)[:6])
  planes = [np.asarray(plane.transform((width, height), Image.AFFINE, data,
                                       resample=Image.BILINEAR, fillcolor=0))
            for plane in _to_pil_planes(image)]
  image = planes[0] if image.shape[-1] == 3 else np.stack(planes, axis=-1)
  mask = np.asarray(Image.fromarray(np.ascontiguousarray(mask[..., 0]), "L").transform(
      (width, height), Image.AFFINE, data, resample=Image.NEAREST, fillcolor=ignore_index))
  return {**record, "image": image, "mask": mask[..., None]}


def _about_centre(forward: np.ndarray, height: int, width: int,
                  shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
  """Inverse (output -> input) of `forward` (2x2, on (x, y)) about the image centre, then a shift."""
  centre = np.array([width / 2.0, height / 2.0])
  inverse = np.linalg.inv(forward)
  offset = centre - inverse @ (centre + np.asarray(shift))
  return np.concatenate([inverse, offset[:, None]], axis=1)


def _rotation(degrees: float) -> np.ndarray:
  theta = math.radians(degrees)
  return np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])


def _resize_planes(image: np.ndarray, size: tuple[int, int], box=None) -> np.ndarray:
  """The image resized to (width, height) = size (PIL's order), of `box` if given:
  `resampling.resize_image`, the resize inference uses too."""
  return resampling.resize_image(image, (size[1], size[0]), box)


def _resize_mask(mask: np.ndarray, size: tuple[int, int], box=None) -> np.ndarray:
  pil = Image.fromarray(np.ascontiguousarray(mask[..., 0]), "L")
  return np.asarray(pil.resize(size, Image.NEAREST, box=box))[..., None]


@register("scale_crop")
def scale_crop(record, rng, config):
  """Zoom by s from `scale_range`, then the window of the original size at a random
  position: inside the zoomed image (s >= 1), or the zoomed image placed at a random
  position in a padded window (s < 1)."""
  image, mask = record["image"], record["mask"]
  height, width = image.shape[:2]
  scale = _uniform_range(rng, config.scale_range, "scale_range")
  if scale <= 0:
    raise ValueError(f"dataset.scale_range={tuple(config.scale_range)} must be positive")
  if scale >= 1:
    # One resampling of the window, the box in source pixels (resize is faster than warp).
    top = rng.uniform(0, height * (scale - 1)) / scale
    left = rng.uniform(0, width * (scale - 1)) / scale
    box = (left, top, left + width / scale, top + height / scale)
    return {**record, "image": _resize_planes(image, (width, height), box),
            "mask": _resize_mask(mask, (width, height), box)}
  small_h, small_w = max(1, round(height * scale)), max(1, round(width * scale))
  top, left = int(rng.integers(0, height - small_h + 1)), int(rng.integers(0, width - small_w + 1))
  new_image = np.zeros_like(image)
  new_mask = np.full_like(mask, config.ignore_index)
  new_image[top:top + small_h, left:left + small_w] = _resize_planes(image, (small_w, small_h))
  new_mask[top:top + small_h, left:left + small_w] = _resize_mask(mask, (small_w, small_h))
  return {**record, "image": new_image, "mask": new_mask}


@register("translate")
def translate(record, rng, config):
  """Shift by whole pixels (exact, no interpolation)."""
  image, mask = record["image"], record["mask"]
  height, width = image.shape[:2]
  max_y = int(config.translate_fraction * height)
  max_x = int(config.translate_fraction * width)
  dy, dx = int(rng.integers(-max_y, max_y + 1)), int(rng.integers(-max_x, max_x + 1))
  if dy == 0 and dx == 0:
    return record
  new_image = np.zeros_like(image)
  new_mask = np.full_like(mask, config.ignore_index)
  src_y, dst_y = slice(max(0, -dy), height - max(0, dy)), slice(max(0, dy), height - max(0, -dy))
  src_x, dst_x = slice(max(0, -dx), width - max(0, dx)), slice(max(0, dx), width - max(0, -dx))
  new_image[dst_y, dst_x] = image[src_y, src_x]
  new_mask[dst_y, dst_x] = mask[src_y, src_x]
  return {**record, "image": new_image, "mask": new_mask}


@register("rotate")
def rotate(record, rng, config):
  height, width = record["image"].shape[:2]
  angle = rng.uniform(-config.rotation_degrees, config.rotation_degrees)
  return warp(record, _about_centre(_rotation(angle), height, width), config.ignore_index)


@register("affine")
def affine(record, rng, config):
  height, width = record["image"].shape[:2]
  angle = rng.uniform(-config.rotation_degrees, config.rotation_degrees)
  scale = _uniform_range(rng, config.scale_range, "scale_range")
  shear = math.tan(math.radians(rng.uniform(-config.shear_degrees, config.shear_degrees)))
  shift = (rng.uniform(-1, 1) * config.translate_fraction * width,
           rng.uniform(-1, 1) * config.translate_fraction * height)
  forward = _rotation(angle) @ np.array([[1.0, shear], [0.0, 1.0]]) * scale
  return warp(record, _about_centre(forward, height, width, shift), config.ignore_index)


def rescale_crop(record: dict, rng: np.random.Generator, config, crop_size: tuple[int, int],
                 base_factor: float = 1.0) -> dict:
  """The keep-ratio training view (mmsegmentation's Resize + RandomCrop + Pad).

  The image is rescaled by `base_factor` (fitting `dataset.scale`) times a
  factor drawn from `scale_range`, keeping its aspect ratio; a random window of
  `crop_size` (height, width) is cut from it (only that window is resampled:
  PIL's resize of a box) and padded with 0 (image) and `ignore_index` (mask)
  where the rescaled image is smaller. With `cat_max_ratio` < 1, up to 10
  windows are drawn until no class covers more than that fraction of the
  window's labelled pixels (the last one is kept otherwise).
  """
  image, mask = record["image"], record["mask"]
  height, width = image.shape[:2]
  factor = base_factor * _uniform_range(rng, config.scale_range, "scale_range")
  if factor <= 0:
    raise ValueError(f"dataset.scale_range={tuple(config.scale_range)} must be positive")
  scaled_h, scaled_w = max(1, round(height * factor)), max(1, round(width * factor))
  crop_h, crop_w = crop_size
  out_h, out_w = min(crop_h, scaled_h), min(crop_w, scaled_w)
  scale_y, scale_x = height / scaled_h, width / scaled_w  # Source pixels per scaled pixel.
  for _ in range(10 if config.get("cat_max_ratio", 1.0) < 1 else 1):
    top = int(rng.integers(0, scaled_h - out_h + 1))
    left = int(rng.integers(0, scaled_w - out_w + 1))
    box = (left * scale_x, top * scale_y, (left + out_w) * scale_x, (top + out_h) * scale_y)
    new_mask = _resize_mask(mask, (out_w, out_h), box)
    labels = new_mask[new_mask != config.ignore_index]
    if labels.size:
      counts = np.bincount(labels)
      counts = counts[counts > 0]
      if len(counts) > 1 and counts.max() / counts.sum() < config.get("cat_max_ratio", 1.0):
        break
  new_image = _resize_planes(image, (out_w, out_h), box)
  if (out_h, out_w) != (crop_h, crop_w):
    padded_image = np.zeros((crop_h, crop_w, image.shape[-1]), np.uint8)
    padded_mask = np.full((crop_h, crop_w, 1), config.ignore_index, np.uint8)
    padded_image[:out_h, :out_w] = new_image.reshape(out_h, out_w, -1)
    padded_mask[:out_h, :out_w] = new_mask
    new_image, new_mask = padded_image, padded_mask
  return {**record, "image": new_image.reshape(crop_h, crop_w, -1), "mask": new_mask}


# Photometric: the image only.

def _factor(rng, amount: float) -> float:
  return float(rng.uniform(max(0.0, 1 - amount), 1 + amount))


def colour_transform(image: np.ndarray, brightness=1.0, contrast=1.0, saturation=1.0,
                     hue=0.0) -> np.ndarray:
  """Brightness, contrast, saturation, hue (fraction of a turn) as one affine colour map.

  brightness: x * b; contrast: mean gray + c (x - mean gray); saturation:
  gray + s (x - gray) per pixel; hue: rotation of the YIQ chroma plane.
  Saturation and hue keep each pixel's gray, so the whole is
  x -> c b M x + (1 - c) b mean_gray.
  """
  channels = image.shape[-1]
  mean_gray = float(image[::4, ::4].reshape(-1, channels).mean(0) @ (
      LUMA if channels == 3 else np.ones(channels) / channels))
  offset = (1 - contrast) * brightness * mean_gray
  if channels != 3:
    out = image.astype(np.float32) * (contrast * brightness) + offset
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
  saturate = saturation * np.eye(3) + (1 - saturation) * np.outer(np.ones(3), LUMA)
  angle = 2 * math.pi * hue
  rotate_iq = np.array([[1, 0, 0], [0, math.cos(angle), -math.sin(angle)],
                        [0, math.sin(angle), math.cos(angle)]])
  matrix = contrast * brightness * (_YIQ_TO_RGB @ rotate_iq @ _RGB_TO_YIQ @ saturate)
  data = np.concatenate([matrix, np.full((3, 1), offset)], axis=1).reshape(-1)
  # PIL applies the 3x4 matrix in C, rounding and clipping to [0, 255].
  out = Image.fromarray(np.ascontiguousarray(image), "RGB").convert("RGB", tuple(data))
  return np.asarray(out)


def _jitter(record, rng, config, parts):
  amounts = {"brightness": config.brightness, "contrast": config.contrast,
             "saturation": config.saturation}
  options = {name: _factor(rng, amounts[name]) for name in parts if name != "hue"}
  if "hue" in parts:
    options["hue"] = float(rng.uniform(-config.hue, config.hue))
  return {**record, "image": colour_transform(record["image"], **options)}


@register("color_jitter")
def color_jitter(record, rng, config):
  return _jitter(record, rng, config, ("brightness", "contrast", "saturation", "hue"))


for _part in ("brightness", "contrast", "saturation", "hue"):
  register(_part)(lambda record, rng, config, _p=_part: _jitter(record, rng, config, (_p,)))


@register("blur")
def blur(record, rng, config):
  if rng.random() >= config.blur_prob:
    return record
  sigma = _uniform_range(rng, config.blur_sigma, "blur_sigma")
  image = record["image"]
  planes = [np.asarray(plane.filter(ImageFilter.GaussianBlur(sigma)))
            for plane in _to_pil_planes(image)]
  image = planes[0] if image.shape[-1] == 3 else np.stack(planes, axis=-1)
  return {**record, "image": image}


@register("noise")
def noise(record, rng, config):
  if rng.random() >= config.noise_prob:
    return record
  std = rng.uniform(0, config.noise_std)
  image = record["image"]
  noisy = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(std)
  return {**record, "image": np.clip(noisy + 0.5, 0, 255).astype(np.uint8)}


@register("dropout")
def dropout(record, rng, config):
  if rng.random() >= config.dropout_prob:
    return record
  image = record["image"]
  dropped = rng.random(image.shape[:2], dtype=np.float32) < config.dropout_rate
  return {**record, "image": np.where(dropped[..., None], np.uint8(0), image)}


@register("grayscale")
def grayscale(record, rng, config):
  image = record["image"]
  if rng.random() >= config.grayscale_prob or image.shape[-1] != 3:
    return record
  gray = np.asarray(Image.fromarray(np.ascontiguousarray(image), "RGB").convert("L"))
  return {**record, "image": np.repeat(gray[..., None], 3, axis=-1)}
