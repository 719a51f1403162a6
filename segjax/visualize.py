"""Pictures of predictions: colour masks, overlays, and input | truth | prediction grids."""

from __future__ import annotations

import numpy as np
from PIL import Image

IGNORE_COLOUR = (255, 255, 255)


def palette(num_classes: int) -> np.ndarray:
  """uint8 (num_classes, 3): black background, then well-separated hues."""
  colours = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
             (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60),
             (250, 190, 212), (0, 128, 128)]
  rng = np.random.default_rng(0)
  while len(colours) < num_classes:
    colours.append(tuple(int(v) for v in rng.integers(0, 256, 3)))
  return np.asarray(colours[:num_classes], np.uint8)


def colourise(mask: np.ndarray, num_classes: int) -> np.ndarray:
  """(H, W) class indices -> uint8 (H, W, 3); labels >= num_classes (ignored) in white."""
  colours = np.concatenate([palette(num_classes), np.full((256 - num_classes, 3), IGNORE_COLOUR,
                                                          np.uint8)])
  return colours[np.clip(mask, 0, 255).astype(np.uint8)]


def as_rgb(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  return np.repeat(image, 3, -1) if image.shape[-1] == 1 else image[..., :3]


def overlay(image: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = 0.5) -> np.ndarray:
  """Blends the class colours over the image; background (class 0) stays as it is."""
  rgb = as_rgb(image).astype(np.float32)
  coloured = colourise(mask, num_classes).astype(np.float32)
  blend = np.where((mask > 0)[..., None], (1 - alpha) * rgb + alpha * coloured, rgb)
  return blend.astype(np.uint8)


def prediction_grid(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                    num_classes: int) -> np.ndarray:
  """uint8 (N*H, 3*W, 3): one row per example, input | ground truth | prediction."""
  rows = [np.concatenate([as_rgb(image), colourise(label, num_classes),
                          colourise(prediction, num_classes)], axis=1)
          for image, label, prediction in zip(images, labels, predictions)]
  return np.concatenate(rows, axis=0)


def save_png(array: np.ndarray, path: str) -> None:
  Image.fromarray(np.asarray(array, np.uint8)).save(path)
