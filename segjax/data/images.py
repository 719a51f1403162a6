"""Reading and checking image and mask files of datasets built from folders.

Images (jpg, png, bmp, tif) become 8-bit RGB:
  RGB            as stored.
  L, 1 (gray)    gray replicated into R, G and B (`dataset.grayscale=True`
                 gives a one-channel input instead).
  P (palette)    its colours.
  RGBA, LA, PA   composited on black: colour * alpha / 255 (a transparent
                 pixel becomes black, whatever colour it stores).
  CMYK, YCbCr    converted by PIL, without colour management.
  16-bit gray, 32-bit integer and float images, and other modes: rejected
                 (convert them to 8-bit first). PIL reads a 16-bit RGB PNG
                 as 8-bit RGB (the high byte of each value).

Masks become uint8 (H, W) class indices by `dataset.mask_encoding`:
  index      8-bit gray or palette image whose stored value (a palette
             image's index) is the class; 16-bit gray masks are read as class
             indices too. An RGB file whose three channels are equal counts as gray.
  binary     values 0 and 255 (or 0 and 1) become classes 0 and 1; any other
             value is an error (for lossy masks use `threshold`).
  palette    palette (P) image: the palette index is the class (as PASCAL
             VOC), the palette's colours are not looked at.
  color      RGB image; each colour is looked up in `dataset.class_colors`
             (colour i = class i); a colour not in the table is an error.
  threshold  lossy (JPEG) binary masks: gray value > `dataset.mask_threshold`
             is class 1, the rest class 0 (colour masks are made gray first).
Every mask value must then be < `dataset.num_classes` or equal
`dataset.ignore_index`.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageFile

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MASK_ENCODINGS = ("index", "binary", "palette", "color", "threshold")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_CONVERTIBLE_MODES = ("RGB", "L", "1", "P", "CMYK", "YCbCr", "RGBX") + _ALPHA_MODES
_LOSSY_FORMATS = ("JPEG", "MPO")

ImageFile.LOAD_TRUNCATED_IMAGES = False  # A truncated file is an error, not a grey band.


class DatasetError(ValueError):
  """A dataset's files or options are wrong; says which file or key, and what to do."""


def open_image(path: str | io.BytesIO, name: str = "") -> Image.Image:
  """Opens and fully decodes `path` (or a file's bytes in memory, called `name` in
  errors); a corrupt or truncated file raises DatasetError."""
  path_text = name or path
  try:
    with Image.open(path) as image:
      image.load()
      return image
  except FileNotFoundError:
    raise DatasetError(f"{path_text}: file not found") from None
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
    raise DatasetError(f"{path_text}: cannot decode the image, the file is corrupt or truncated "
                       f"({error})") from None


def to_rgb(image: Image.Image, path: str) -> Image.Image:
  """An 8-bit RGB image by the rules of this module's docstring."""
  mode = image.mode
  if mode == "RGB":
    return image
  if mode == "P" and "transparency" in image.info:
    image, mode = image.convert("RGBA"), "RGBA"
  if mode in _ALPHA_MODES:
    rgba = np.asarray(image.convert("RGBA"), np.uint16)
    rgb = (rgba[..., :3] * rgba[..., 3:] + 127) // 255
    return Image.fromarray(rgb.astype(np.uint8), "RGB")
  if mode in _CONVERTIBLE_MODES:
    return image.convert("RGB")
  raise DatasetError(
      f"{path}: unsupported image mode {mode!r} ({_describe_mode(mode)}); images must be "
      f"8-bit gray, palette, RGB, RGBA, CMYK or YCbCr: convert the file to 8-bit RGB")


def _describe_mode(mode: str) -> str:
  if mode.startswith("I;16"):
    return "16-bit"
  return {"I": "32-bit integer", "F": "32-bit float", "LAB": "CIELAB",
          "HSV": "HSV"}.get(mode, "not an 8-bit colour mode")


def is_stored_as_is(image: Image.Image) -> bool:
  """Whether the file's own bytes can be stored: an RGB JPEG (re-encoding it would lose
  quality). Other files are stored as RGB PNG (a PNG may be 16-bit, which decoders
  other than PIL would not read as 8-bit)."""
  return image.mode == "RGB" and image.format == "JPEG"


@dataclasses.dataclass(frozen=True)
class MaskOptions:
  """How a mask file's values become classes (see the module docstring)."""
  encoding: str = "index"
  num_classes: int = 2
  ignore_index: int = 255
  class_colors: tuple = ()
  threshold: int = 127

  @classmethod
  def from_config(cls, dataset_config) -> "MaskOptions":
    options = cls(encoding=dataset_config.mask_encoding,
                  num_classes=int(dataset_config.num_classes),
                  ignore_index=int(dataset_config.ignore_index),
                  class_colors=tuple(tuple(int(v) for v in colour)
                                     for colour in dataset_config.class_colors),
                  threshold=int(dataset_config.mask_threshold))
    options.check()
    return options

  def check(self) -> None:
    if self.encoding not in MASK_ENCODINGS:
      raise DatasetError(f"dataset.mask_encoding={self.encoding!r} is not one of "
                         f"{', '.join(MASK_ENCODINGS)}")
    if not 1 <= self.num_classes <= 255:
      raise DatasetError(f"dataset.num_classes={self.num_classes} must be in [1, 255]")
    if not 0 <= self.ignore_index <= 255:
      raise DatasetError(f"dataset.ignore_index={self.ignore_index} must be in [0, 255] "
                         f"(masks are 8-bit)")
    if 0 <= self.ignore_index < self.num_classes:
      raise DatasetError(f"dataset.ignore_index={self.ignore_index} is a class index "
                         f"(dataset.num_classes={self.num_classes}): use a value >= num_classes")
    if not 0 <= self.threshold < 255:
      raise DatasetError(f"dataset.mask_threshold={self.threshold} must be in [0, 254]")
    if self.encoding == "color":
      if len(self.class_colors) != self.num_classes:
        raise DatasetError(
            f"dataset.mask_encoding='color' needs one RGB colour per class in "
            f"dataset.class_colors: {len(self.class_colors)} given, "
            f"dataset.num_classes={self.num_classes}")
      for colour in self.class_colors:
        if len(colour) != 3 or not all(0 <= v <= 255 for v in colour):
          raise DatasetError(f"dataset.class_colors entry {colour} is not an RGB triple "
                             f"of values in [0, 255]")
      if len(set(self.class_colors)) != len(self.class_colors):
        raise DatasetError(f"dataset.class_colors has a colour twice: {self.class_colors}")
    if self.encoding in ("binary", "threshold") and self.num_classes < 2:
      raise DatasetError(f"dataset.mask_encoding={self.encoding!r} gives classes 0 and 1: "
                         f"dataset.num_classes must be >= 2")


def decode_mask(image: Image.Image, path: str, options: MaskOptions) -> np.ndarray:
  """Class indices uint8 (H, W) of a mask image; values checked against the options."""
  encoding = options.encoding
  if encoding == "color":
    mask = _colour_lookup(image, path, options.class_colors)
  elif encoding == "threshold":
    gray = np.asarray(image if image.mode == "L" else _gray(image, path))
    mask = (gray > options.threshold).astype(np.uint8)
  elif encoding == "palette":
    if image.mode != "P":
      raise DatasetError(f"{path}: mask_encoding='palette' needs a palette (P) image, this "
                         f"one is {image.mode}; use mask_encoding='color' with "
                         f"dataset.class_colors for RGB masks")
    mask = np.asarray(image)
  else:
    mask = _single_channel(image, path)
    if encoding == "binary":
      mask = _binary(mask, path)
  check_labels(mask, path, options.num_classes, options.ignore_index, lossy=_is_lossy(image))
  return mask.astype(np.uint8)


def _is_lossy(image: Image.Image) -> bool:
  return image.format in _LOSSY_FORMATS


def _gray(image: Image.Image, path: str) -> Image.Image:
  if image.mode in ("RGB", "RGBA", "P", "LA", "1", "L"):
    return image.convert("L")
  raise DatasetError(f"{path}: unsupported mask mode {image.mode!r} "
                     f"({_describe_mode(image.mode)}); save the mask as 8-bit gray")


def _single_channel(image: Image.Image, path: str) -> np.ndarray:
  """Stored values of a one-channel mask: gray, palette index, 16-bit gray."""
  mode = image.mode
  if mode in ("L", "P"):
    return np.asarray(image)
  if mode == "1":
    return np.asarray(image).astype(np.uint8)
  if mode in ("I", "I;16", "I;16B", "I;16L"):
    return np.asarray(image).astype(np.int64)  # Range-checked before the uint8 cast.
  if mode in ("RGB", "RGBA"):
    rgb = np.asarray(image)[..., :3]
    if (rgb == rgb[..., :1]).all():
      return rgb[..., 0]
    raise DatasetError(f"{path}: mask is a colour image ({mode}) with unequal channels; use "
                       f"mask_encoding='color' with dataset.class_colors, or save class "
                       f"indices as an 8-bit gray PNG")
  raise DatasetError(f"{path}: unsupported mask mode {mode!r} ({_describe_mode(mode)})")


def _binary(mask: np.ndarray, path: str) -> np.ndarray:
  values = set(np.unique(mask).tolist())
  if values <= {0, 255}:
    return (mask == 255).astype(np.uint8)
  if values <= {0, 1}:
    return mask.astype(np.uint8)
  others = sorted(values - {0, 1, 255})[:8]
  raise DatasetError(f"{path}: mask_encoding='binary' expects values 0 and 255 (or 0 and 1), "
                     f"found also {others}; for lossy (JPEG) masks use "
                     f"mask_encoding='threshold'")


def _colour_lookup(image: Image.Image, path: str, class_colors: Sequence) -> np.ndarray:
  if image.mode not in ("RGB", "RGBA", "P", "RGBX"):
    raise DatasetError(f"{path}: mask_encoding='color' needs an RGB mask, this one is "
                       f"{image.mode} ({_describe_mode(image.mode)})")
  rgb = np.asarray(image.convert("RGB")).astype(np.int32)
  codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
  table = {(r << 16) | (g << 8) | b: index for index, (r, g, b) in enumerate(class_colors)}
  values, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
  unknown = [(int(v), int(n)) for v, n in zip(values, counts) if int(v) not in table]
  if unknown:
    shown = ", ".join(f"{(v >> 16, (v >> 8) & 255, v & 255)} ({n} px)" for v, n in unknown[:5])
    raise DatasetError(
        f"{path}: {len(unknown)} mask colour(s) not in dataset.class_colors: {shown}"
        f"{' ...' if len(unknown) > 5 else ''}; the table is {tuple(class_colors)}"
        f"{' (the file is JPEG: lossy compression changes colours, use PNG masks)' if _is_lossy(image) else ''}")
  lookup = np.array([table[int(v)] for v in values], np.uint8)
  return lookup[inverse.reshape(codes.shape)]


def check_labels(mask: np.ndarray, path: str, num_classes: int, ignore_index: int,
                 lossy: bool = False) -> None:
  """Every value must be a class index (< num_classes) or ignore_index."""
  bad = (mask >= num_classes) & (mask != ignore_index)
  if bad.any():
    values = sorted(set(np.unique(mask[bad]).tolist()))
    hint = (" (the file is lossy, e.g. JPEG: use mask_encoding='threshold' for binary "
            "masks, or lossless PNG masks)" if lossy else
            "; check dataset.num_classes and dataset.mask_encoding")
    raise DatasetError(
        f"{path}: mask values {values[:8]}{' ...' if len(values) > 8 else ''} at "
        f"{int(bad.sum())} pixel(s) are neither a class index (< num_classes={num_classes}) "
        f"nor ignore_index={ignore_index}{hint}")


def check_same_size(image: Image.Image, image_path: str, mask: Image.Image, mask_path: str):
  if image.size != mask.size:
    raise DatasetError(f"{image_path} is {image.size[0]}x{image.size[1]} (WxH) but its mask "
                       f"{mask_path} is {mask.size[0]}x{mask.size[1]}: image and mask must "
                       f"have the same size")


def list_image_files(directory: str) -> dict[str, str]:
  """{file stem: path} of the image files in `directory` (hidden files skipped)."""
  if not os.path.isdir(directory):
    raise DatasetError(f"{directory}: folder not found")
  files: dict[str, str] = {}
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    if name.startswith(".") or os.path.isdir(path):
      continue
    stem, extension = os.path.splitext(name)
    if extension.lower() not in IMAGE_EXTENSIONS:
      raise DatasetError(f"{path}: unsupported file type {extension!r}; supported: "
                         f"{', '.join(IMAGE_EXTENSIONS)} (move other files out of the folder)")
    if stem in files:
      raise DatasetError(f"{path} and {files[stem]} have the same name: pairs are matched by "
                         f"file name without extension, so each name must be unique")
    files[stem] = path
  return files


def match_pairs(images: dict[str, str], masks: dict[str, str], image_dir: str,
                mask_dir: str) -> list[tuple[str, str, str]]:
  """(stem, image path, mask path) sorted by stem; every file must have its partner."""
  without_mask = sorted(set(images) - set(masks))
  without_image = sorted(set(masks) - set(images))
  problems = [f"{images[s]}: no mask named {s}.* in {mask_dir}" for s in without_mask]
  problems += [f"{masks[s]}: no image named {s}.* in {image_dir}" for s in without_image]
  if problems:
    raise DatasetError(summarize(problems, "image/mask pairs do not match"))
  return [(stem, images[stem], masks[stem]) for stem in sorted(images)]


def summarize(problems: Sequence[str], what: str, limit: int = 20) -> str:
  shown = "\n  ".join(problems[:limit])
  more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
  return f"{what}: {len(problems)} problem(s)\n  {shown}{more}"


def split_by_ratios(items: Sequence, ratios: Sequence[float], names: Sequence[str],
                    seed: int | None = None) -> dict[str, list]:
  """Consecutive parts of `items` (shuffled by `seed` first unless None) by `ratios`.

  Boundaries are round(cumulative ratio * n), so the last part takes what
  rounding leaves; the same items, ratios and seed always give the same parts.
  """
  ratios = [float(r) for r in ratios]
  if len(ratios) != len(names) or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
    raise DatasetError(f"dataset.split_ratios={tuple(ratios)} must be {len(names)} "
                       f"non-negative fractions ({', '.join(names)}) that sum to 1")
  items = list(items)
  if seed is not None:
    items = [items[i] for i in np.random.default_rng(seed).permutation(len(items))]
  bounds = np.round(np.cumsum([0.0] + ratios) * len(items)).astype(int)
  bounds[-1] = len(items)
  return {name: items[bounds[i]:bounds[i + 1]] for i, name in enumerate(names)}
