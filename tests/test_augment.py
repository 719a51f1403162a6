"""Augmentations: geometric ones keep image and mask aligned; photometric ones
touch the image only; options do what they say."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from segjax import config as config_lib
from segjax.data import augment

GEOMETRIC = ("flip", "scale_crop", "translate", "rotate", "affine")
PHOTOMETRIC = ("color_jitter", "brightness", "contrast", "saturation", "hue", "blur", "noise",
               "dropout", "grayscale")
IGNORE = 255


def dataset_config(**overrides):
  config = config_lib.base_config().dataset
  config.ignore_index = IGNORE
  for key, value in overrides.items():
    config[key] = value
  return config


def coordinate_record(height, width):
  """Image: (y + 1, x + 1, 255) per pixel (0 only where padding came in); mask: y."""
  yy, xx = np.mgrid[0:height, 0:width]
  image = np.stack([yy + 1, xx + 1, np.full_like(yy, 255)], -1).astype(np.uint8)
  return {"image": image, "mask": yy[..., None].astype(np.uint8)}


def source_coordinates(name, config, seed, height, width):
  """Per output pixel: the source (y, x) read from the image (interpolated), and from
  the masks (nearest) of two runs with the same random draws."""
  record = coordinate_record(height, width)
  out_y = augment.get(name)(record, np.random.default_rng(seed), config)
  yy, xx = np.mgrid[0:height, 0:width]
  out_x = augment.get(name)({"image": record["image"], "mask": xx[..., None].astype(np.uint8)},
                            np.random.default_rng(seed), config)
  assert np.array_equal(out_y["image"], out_x["image"])
  image = out_y["image"].astype(int)
  inside = (image[..., 2] == 255) & (out_y["mask"][..., 0] != IGNORE)
  from_image = np.stack([image[..., 0] - 1, image[..., 1] - 1], -1)
  from_mask = np.stack([out_y["mask"][..., 0], out_x["mask"][..., 0]], -1).astype(int)
  return inside, from_image, from_mask, out_y


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(GEOMETRIC), seed=st.integers(0, 2**32 - 1),
       height=st.integers(8, 60), width=st.integers(8, 60))
def test_geometric_keeps_image_and_mask_aligned(name, seed, height, width):
  config = dataset_config(hflip_prob=0.5, scale_range=(0.5, 2.0), translate_fraction=0.3,
                          rotation_degrees=45.0, shear_degrees=10.0)
  inside, from_image, from_mask, out = source_coordinates(name, config, seed, height, width)
  assert out["image"].shape == (height, width, 3) and out["image"].dtype == np.uint8
  assert out["mask"].shape == (height, width, 1) and out["mask"].dtype == np.uint8
  # Bilinear (image) and nearest (mask) sample the same point: at most a pixel apart.
  difference = np.abs(from_image - from_mask)[inside]
  assert difference.size == 0 or difference.max() <= 1
  if name in ("flip", "translate"):  # Whole-pixel moves are exact.
    assert np.array_equal(from_image[inside], from_mask[inside])
  # Pixels from outside the image are ignored in the mask, and black in the image.
  outside = out["mask"][..., 0] == IGNORE
  assert (out["image"][outside][:, 2] < 255).all() or not outside.any()


@pytest.mark.parametrize("name", GEOMETRIC)
def test_geometric_moves_something(name):
  config = dataset_config(hflip_prob=1.0, scale_range=(1.5, 1.5), translate_fraction=0.25,
                          rotation_degrees=30.0)
  record = coordinate_record(32, 32)
  record["mask"] = (record["image"][..., 1:2] % 7).astype(np.uint8)
  moved = [not np.array_equal(augment.get(name)(record, np.random.default_rng(s), config)["mask"],
                              record["mask"]) for s in range(5)]
  assert any(moved)


def test_identity_options_change_nothing():
  config = dataset_config(hflip_prob=0.0, scale_range=(1.0, 1.0), translate_fraction=0.0,
                          rotation_degrees=0.0, shear_degrees=0.0, brightness=0.0,
                          contrast=0.0, saturation=0.0, hue=0.0, blur_prob=0.0, noise_prob=0.0,
                          dropout_prob=0.0, grayscale_prob=0.0)
  rng = np.random.default_rng(0)
  record = {"image": rng.integers(0, 256, (20, 24, 3), dtype=np.uint8),
            "mask": rng.integers(0, 4, (20, 24, 1), dtype=np.uint8)}
  for name in augment.names():
    out = augment.get(name)(record, np.random.default_rng(1), config)
    assert np.array_equal(out["mask"], record["mask"]), name
    assert np.abs(out["image"].astype(int) - record["image"]).max() <= 1, name


@pytest.mark.parametrize("name", PHOTOMETRIC)
@pytest.mark.parametrize("channels", [1, 3])
def test_photometric_changes_the_image_only(name, channels):
  config = dataset_config(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.25,
                          blur_prob=1.0, noise_prob=1.0, noise_std=20.0, dropout_prob=1.0,
                          dropout_rate=0.3, grayscale_prob=1.0)
  rng = np.random.default_rng(0)
  record = {"image": rng.integers(0, 256, (16, 20, channels), dtype=np.uint8),
            "mask": rng.integers(0, 3, (16, 20, 1), dtype=np.uint8)}
  out = augment.get(name)(record, np.random.default_rng(3), config)
  assert out["image"].shape == record["image"].shape and out["image"].dtype == np.uint8
  assert out["mask"] is record["mask"]
  colour_only = name in ("saturation", "hue", "grayscale")
  if channels == 3 or not colour_only:
    assert not np.array_equal(out["image"], record["image"]), name


def test_colour_transform_factors():
  image = np.full((4, 4, 3), 100, np.uint8)
  image[0, 0] = (200, 50, 10)
  gray_pixel = augment.colour_transform(image, saturation=0.0)[0, 0]
  assert np.ptp(gray_pixel.astype(int)) <= 1  # Saturation 0: gray.
  assert abs(int(gray_pixel[0]) - round(float(augment.LUMA @ [200, 50, 10]))) <= 1
  assert np.array_equal(augment.colour_transform(image, brightness=1.5)[1, 1], [150] * 3)
  assert augment.colour_transform(image, brightness=3.0).max() == 255  # Clipped.
  flat = augment.colour_transform(image, contrast=0.0)
  assert np.ptp(flat.astype(int)) <= 1  # Contrast 0: the mean gray everywhere.
  hue_turn = augment.colour_transform(image, hue=1.0)
  assert np.abs(hue_turn.astype(int) - image).max() <= 1  # A full turn is the identity.


def test_augmentations_are_reproducible():
  config = dataset_config(blur_prob=1.0, noise_prob=1.0, dropout_prob=1.0)
  record = coordinate_record(24, 24)
  for name in augment.names():
    a = augment.get(name)(record, np.random.default_rng(7), config)
    b = augment.get(name)(record, np.random.default_rng(7), config)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["mask"], b["mask"])


def test_unknown_augmentation_names_the_key():
  with pytest.raises(ValueError, match="dataset.augmentations"):
    augment.get("warp_drive")


def test_bad_range_names_the_key():
  config = dataset_config(scale_range=(2.0, 1.0))
  with pytest.raises(ValueError, match="dataset.scale_range"):
    augment.get("scale_crop")(coordinate_record(8, 8), np.random.default_rng(0), config)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(8, 60), width=st.integers(8, 60),
       crop=st.tuples(st.integers(4, 40), st.integers(4, 40)),
       base=st.sampled_from([0.5, 1.0, 1.5]))
def test_rescale_crop_keeps_image_and_mask_aligned(seed, height, width, crop, base):
  """keep_ratio's training view: rescaled (aspect kept), cropped, padded; the image's and
  the mask's pixels come from the same source points."""
  config = dataset_config(scale_range=(0.7, 1.4))
  record = coordinate_record(height, width)
  yy, xx = np.mgrid[0:height, 0:width]
  views = [augment.rescale_crop({"image": record["image"], "mask": m[..., None].astype(np.uint8)},
                                np.random.default_rng(seed), config, crop, base)
           for m in (yy, xx)]
  assert np.array_equal(views[0]["image"], views[1]["image"])
  out = views[0]
  assert out["image"].shape == (*crop, 3) and out["mask"].shape == (*crop, 1)
  padding = out["mask"][..., 0] == IGNORE
  assert not out["image"][padding].any()  # Padded with 0, ignored in the mask.
  inside = ~padding
  from_image = np.stack([out["image"][..., 0], out["image"][..., 1]], -1).astype(int) - 1
  from_mask = np.stack([views[0]["mask"][..., 0], views[1]["mask"][..., 0]], -1).astype(int)
  assert inside[0, 0]  # The crop's corner is always inside the rescaled image.
  # Bilinear (image, antialiased when shrinking) and nearest (mask) of the same point.
  assert np.abs(from_image - from_mask)[inside].max() <= 1.5
  # The aspect ratio is kept: as many source pixels per output pixel down as across.
  rows = from_mask[inside[:, 0], 0, 0]
  cols = from_mask[0, inside[0], 1]
  if len(rows) >= 8 and len(cols) >= 8:
    slope_y, slope_x = np.polyfit(np.arange(len(rows)), rows, 1)[0], np.polyfit(
        np.arange(len(cols)), cols, 1)[0]
    # Nearest-neighbour masks are staircases whose phase differs per axis: a least-squares
    # slope over n samples is off by up to about 1.5 / n on tiny crops.
    quantisation = 1.5 / min(len(rows), len(cols))
    assert abs(slope_y - slope_x) <= 0.15 * max(slope_y, slope_x) + quantisation


def test_rescale_crop_cat_max_ratio_avoids_one_class_crops():
  mask = np.zeros((64, 64, 1), np.uint8)
  mask[40:, 40:] = 1  # One class covers 86% of the image.
  record = {"image": np.zeros((64, 64, 3), np.uint8), "mask": mask}
  config = dataset_config(scale_range=(1.0, 1.0), cat_max_ratio=0.75)
  ratios = []
  for seed in range(10):
    out = augment.rescale_crop(record, np.random.default_rng(seed), config, (32, 32))
    ratios.append(np.bincount(out["mask"].ravel(), minlength=2).max() / out["mask"].size)
  plain = [np.bincount(augment.rescale_crop(record, np.random.default_rng(s),
                                            dataset_config(scale_range=(1.0, 1.0)),
                                            (32, 32))["mask"].ravel(), minlength=2).max() / 1024
           for s in range(10)]
  assert np.mean(np.array(ratios) < 0.75) > np.mean(np.array(plain) < 0.75)


def test_training_resizes_go_through_the_shared_resize():
  """Squash, rescale and zoom resize images with `resampling.resize_image` (what inference
  uses at its test sizes): every channel alike, a 4th channel is not an alpha."""
  from segjax.data import pipeline, resampling
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
  image[..., 3] = 0  # As RGBA, PIL would premultiply the colours by it: all black.
  mask = np.zeros((30, 40, 1), np.uint8)
  out = pipeline.resize({"image": image, "mask": mask}, (15, 20))["image"]
  np.testing.assert_array_equal(out[..., :3], resampling.resize_image(image[..., :3], (15, 20)))
  assert out.shape == (15, 20, 4) and not out[..., 3].any()
  gray = pipeline.resize({"image": image[..., :1], "mask": mask}, (12, 50))["image"]
  np.testing.assert_array_equal(gray, resampling.resize_image(image[..., :1], (12, 50)))
  # scale_crop zooming out by 1/2: the image shrunk by the shared resize, placed somewhere.
  config = dataset_config(scale_range=(0.5, 0.5))
  zoomed = augment.scale_crop({"image": image[..., :3], "mask": mask}, np.random.default_rng(2),
                              config)["image"]
  shrunk = resampling.resize_image(image[..., :3], (15, 20))
  placed = [np.array_equal(zoomed[y:y + 15, x:x + 20], shrunk)
            for y in range(16) for x in range(21)]
  assert any(placed)
