"""Segmentation of images at their own size: whole-image or sliding-window inference,
flip and multi-scale test-time augmentation (mmsegmentation's conventions).

One module for every consumer (training-time evaluation, `segjax.evaluate`,
`segjax.predict`, export). It needs the model's apply function and variables,
nothing of the training loop.

- `model_logits` is the pure, jittable core: uint8 images -> float32 logits of
  the model on exactly those pixels (normalisation inside, optional flip).
- `Segmenter` runs it on images of any size. Each image is resized to its test
  size (`test_size`: the training resize policy, times each of `scales`), then
  - whole: padded to a multiple of the model's total stride and batched with
    the images of the same padded shape; one compilation per padded shape, at
    most `max_shapes` of them (logged); an image of a further shape runs in
    slide mode;
  - slide: windows of the training crop size every `stride` pixels, batched,
    their logits added up and divided by the number of windows covering each
    pixel; the network is compiled for one window shape only.
  Logits are resized (bilinear, half-pixel centres, as PyTorch's
  `align_corners=False`) back to the image's original size and averaged over
  the scales; the arg-max of that average is the prediction.

Images of one batch lie in the top-left corner of a zero "canvas" (original
height and width rounded up to `CANVAS_MULTIPLE`), so that the small programs
around the network (normalise, resize, average) compile once per canvas shape
and not per image size.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from segjax.data import normalize, pipeline
from segjax.runtime import cpu_kernels
from segjax.scoring import losses

MODES = ("whole", "slide")
RESIZE_POLICIES = ("squash", "keep_ratio")
CANVAS_MULTIPLE = 32
# The normalisation of a network that takes pixel values (0-255) and normalises them
# itself, as an exported model does.
PIXELS = "pixels"


def network_logits(apply_fn: Callable, variables: dict, images: jax.Array,
                   flip: bool = False) -> jax.Array:
  """float32 (N, H, W, K) logits of normalised float images (N, H, W, C).

  `flip`: the mean of the logits of the images and of their mirror images,
  mirrored back (mmsegmentation's `flip=True`).
  """
  logits = apply_fn(variables, images, train=False).astype(jnp.float32)
  if flip:
    mirrored = apply_fn(variables, images[:, :, ::-1], train=False).astype(jnp.float32)
    logits = (logits + mirrored[:, :, ::-1]) / 2
  return logits


def model_logits(apply_fn: Callable, variables: dict, images: jax.Array,
                 normalization: str = "unit", flip: bool = False) -> jax.Array:
  """uint8 (N, H, W, C) -> float32 (N, H, W, K) logits; H and W must suit the model
  (a multiple of its total stride). Pure and jittable: what an export wraps."""
  return network_logits(apply_fn, variables, normalize.normalize_images(images, normalization),
                        flip)


# Sizes.

def test_size(height: int, width: int, options: "Options", scale: float) -> tuple[int, int]:
  """(height, width) the network sees for an image of that size at test `scale`."""
  if options.resize == "squash":
    base_height, base_width = options.image_size
  else:
    factor = pipeline.rescale_factor(height, width, options.scale)
    base_height, base_width = height * factor, width * factor
  return max(1, round(base_height * scale)), max(1, round(base_width * scale))


def round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


def window_starts(length: int, window: int, stride: int) -> list[int]:
  """First pixels of the windows covering [0, length) (length >= window), the last one
  flush with the end (mmsegmentation's slide grid)."""
  count = max(length - window + stride - 1, 0) // stride + 1
  return sorted({min(i * stride, length - window) for i in range(count)})


# Options.

def _pair(value, key: str) -> tuple[int, int]:
  if isinstance(value, int):
    return value, value
  if len(value) != 2:
    raise ValueError(f"{key}={tuple(value)}: give one size or (height, width)")
  return int(value[0]), int(value[1])


@dataclasses.dataclass(frozen=True)
class Options:
  """How images are segmented (config keys in brackets; `from_config` reads them).

  Attributes:
    mode: whole | slide (eval.mode).
    scales: test scales, multiples of the test size (eval.scales).
    flip: add the mirror images' logits (eval.flip; runs written before it:
      eval_flip).
    resize: squash | keep_ratio (dataset.resize): the test size is
      `image_size` (squash) or the image's own size times
      `rescale_factor(scale)` (keep_ratio).
    image_size: (height, width) of the training crop (dataset.image_size): the
      squash size and the slide window.
    scale: keep_ratio target (long side, short side) (dataset.scale); empty:
      the image's own size.
    stride: slide step (height, width) (eval.stride); empty: 2/3 of the window.
    batch_size: images per whole-mode batch (eval_batch_size).
    window_batch_size: windows per slide-mode batch (eval.window_batch_size).
    max_shapes: whole-mode padded shapes compiled at most (eval.max_shapes).
    normalization: dataset.normalization, or the pretrained encoder's (normalize.mode_for);
      `PIXELS` for a network that normalises itself.
    total_stride: inputs are padded to a multiple of it (the model's).
  """
  mode: str = "whole"
  scales: tuple[float, ...] = (1.0,)
  flip: bool = False
  resize: str = "keep_ratio"
  image_size: tuple[int, int] = (64, 64)
  scale: tuple[int, ...] = ()
  stride: tuple[int, ...] = ()
  batch_size: int = 8
  window_batch_size: int = 8
  max_shapes: int = 8
  normalization: str = "unit"
  total_stride: int = 1

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"eval.mode={self.mode!r}: use one of {', '.join(MODES)}")
    if self.resize not in RESIZE_POLICIES:
      raise ValueError(f"dataset.resize={self.resize!r}: use one of {', '.join(RESIZE_POLICIES)}")
    if not self.scales or any(s <= 0 for s in self.scales):
      raise ValueError(f"eval.scales={self.scales}: give one or more positive factors")
    if self.scale and (len(self.scale) != 2 or min(self.scale) <= 0):
      raise ValueError(f"dataset.scale={self.scale}: give (long side, short side) in pixels, "
                       "or () for the images' own size")
    if self.stride and min(self.stride) <= 0:
      raise ValueError(f"eval.stride={self.stride} must be positive")
    for key, value in (("eval_batch_size", self.batch_size),
                       ("eval.window_batch_size", self.window_batch_size),
                       ("eval.max_shapes", self.max_shapes)):
      if value < 1:
        raise ValueError(f"{key}={value} must be at least 1")

  @property
  def window(self) -> tuple[int, int]:
    """The slide window: the training crop, rounded up to the model's stride."""
    return tuple(round_up(v, self.total_stride) for v in self.image_size)

  @property
  def step(self) -> tuple[int, int]:
    if self.stride:
      return self.stride
    return tuple(max(1, (2 * v) // 3) for v in self.window)

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, total_stride: int,
                  **overrides) -> "Options":
    """The options of a run's config; `overrides` (e.g. mode="slide") win."""
    evaluation = config.get("eval", ml_collections.ConfigDict())
    dataset = config.dataset
    options = dict(
        mode=evaluation.get("mode", "whole"),
        scales=tuple(float(s) for s in evaluation.get("scales", (1.0,))),
        flip=bool(evaluation.get("flip", False) or config.get("eval_flip", False)),
        resize=dataset.get("resize", "squash"),
        image_size=_pair(dataset.image_size, "dataset.image_size"),
        scale=tuple(int(v) for v in dataset.get("scale", ())),
        stride=(_pair(evaluation.stride, "eval.stride") if evaluation.get("stride", ())
                else ()),
        batch_size=int(config.get("eval_batch_size", 8)),
        window_batch_size=int(evaluation.get("window_batch_size", 8)),
        max_shapes=int(evaluation.get("max_shapes", 8)),
        normalization=_normalization(config),
        total_stride=int(total_stride))
    options.update(overrides)
    return cls(**options)


# Device programs around the network: normalise, resize, accumulate.

def _masked_normalize(images: jax.Array, sizes: jax.Array, mode: str) -> jax.Array:
  """(N, H, W, C) pixel values (0-255) with images of `sizes` (N, 2) in the top-left
  corner -> float32 normalised; `per_image` statistics over each image's own pixels."""
  if mode == PIXELS:
    return images.astype(jnp.float32)
  if mode != "per_image":
    return normalize.normalize_images(images, mode)
  x = images.astype(jnp.float32)
  inside = _inside(sizes, x.shape[1:3])[..., None]
  count = jnp.maximum(jnp.sum(inside, axis=(1, 2, 3), keepdims=True) * x.shape[-1], 1.0)
  mean = jnp.sum(x * inside, axis=(1, 2, 3), keepdims=True) / count
  var = jnp.sum(jnp.square(x - mean) * inside, axis=(1, 2, 3), keepdims=True) / count
  std = jnp.maximum(jnp.sqrt(var), 1.0 / jnp.sqrt(count))
  return (x - mean) / std


def _inside(sizes: jax.Array, shape: tuple[int, int]) -> jax.Array:
  """bool (N, H, W): pixels within each image's (height, width)."""
  rows = jnp.arange(shape[0])[None, :, None] < sizes[:, 0, None, None]
  cols = jnp.arange(shape[1])[None, None, :] < sizes[:, 1, None, None]
  return rows & cols


def _resize_axis(x: jax.Array, axis: int, source: jax.Array, target: jax.Array,
                 length: int) -> jax.Array:
  """Bilinear resize along `axis` of one image: its first `source` entries to `target`
  entries, written into an axis of static `length` (entries past `target` repeat the edge).
  Half-pixel centres, edges clamped (PyTorch's align_corners=False, OpenCV's INTER_LINEAR)."""
  position = (jnp.arange(length, dtype=jnp.float32) + 0.5) * (
      source.astype(jnp.float32) / target.astype(jnp.float32)) - 0.5
  position = jnp.clip(position, 0.0, (source - 1).astype(jnp.float32))
  low = jnp.floor(position).astype(jnp.int32)
  high = jnp.minimum(low + 1, source - 1)
  weight = position - low
  shape = [1] * x.ndim
  shape[axis] = length
  weight = weight.reshape(shape)
  return jnp.take(x, low, axis=axis) * (1 - weight) + jnp.take(x, high, axis=axis) * weight


def resize_batch(x: jax.Array, sizes: jax.Array, targets: jax.Array,
                 shape: tuple[int, int]) -> jax.Array:
  """float (N, H, W, K): each image's top-left `sizes[i]` region resized (bilinear) to
  `targets[i]`, in the top-left corner of an (N, *shape, K) array; zero elsewhere."""
  def one(image, size, target):
    image = _resize_axis(image, 0, size[0], target[0], shape[0])
    return _resize_axis(image, 1, size[1], target[1], shape[1])
  resized = jax.vmap(one)(x, sizes, targets)
  return jnp.where(_inside(targets, shape)[..., None], resized, 0.0)


@functools.partial(jax.jit, static_argnames=("shape", "normalization"))
def _prepare(canvas, sizes, targets, *, shape, normalization):
  """uint8 canvases -> normalised float32 (N, *shape, C), each image at its test size
  and padded with 0 before normalising, as training pads its crops."""
  resized = resize_batch(canvas.astype(jnp.float32), sizes, targets, shape)
  return _masked_normalize(resized, targets, normalization)


@functools.partial(jax.jit, static_argnames=("shape",))
def _to_canvas(total, logits, sizes, targets, *, shape):
  """Adds the logits (N, h, w, K) of images of `sizes`, resized to their original `targets`,
  to `total` (N, *shape, K)."""
  return total + resize_batch(logits, sizes, targets, shape)


@functools.partial(jax.jit, static_argnames=("window",))
def _windows(images, corners, *, window):
  """(N, H, W, C), corners int32 (B, 3) = (image, top, left) -> (B, *window, C)."""
  def one(corner):
    start = (corner[0], corner[1], corner[2], 0)
    return jax.lax.dynamic_slice(images, start, (1, *window, images.shape[-1]))[0]
  return jax.vmap(one)(corners)


@functools.partial(jax.jit, donate_argnums=0)
def _add_windows(total, logits, corners, weights):
  """Adds window logits (B, h, w, K) at `corners` into `total` (N, H, W, K); a window of
  weight 0 (batch padding) adds nothing."""
  def body(i, total):
    corner = corners[i]
    start = (corner[0], corner[1], corner[2], 0)
    window = jax.lax.dynamic_slice(total, start, (1, *logits.shape[1:]))
    return jax.lax.dynamic_update_slice(total, window + logits[i][None] * weights[i], start)
  return jax.lax.fori_loop(0, logits.shape[0], body, total)


_predicted_classes = jax.jit(losses.predicted_classes)


# The segmenter.

@dataclasses.dataclass
class Group:
  """Images segmented together, with their logits at the original size.

  Attributes:
    keys: the caller's key of each image (None for batch padding).
    sizes: int32 (N, 2) original (height, width); (0, 0) for padding.
    logits: float32 (N, H, W, K) on device, the mean over scales; image i
      fills the top-left sizes[i] corner, the rest is 0.
  """
  keys: list
  sizes: np.ndarray
  logits: jax.Array

  def predictions(self) -> np.ndarray:
    """int32 (N, H, W) class per pixel (host)."""
    return to_host(_predicted_classes(self.logits))


class Segmenter:
  """Segments uint8 images of any size with a model's apply function (see module docs).

  Args:
    apply_fn: `model.apply`.
    options: `Options`.
    batch_sharding: where network inputs go (the data axes of the mesh the
      variables live on); batches whose size does not divide by its devices
      stay replicated. With it, every host array becomes a global array
      replicated over the mesh, so that all processes of a multi-process run
      segment the same images together. None: the default device.
    log: one line per new compiled shape (and per slide fallback).
  """

  def __init__(self, apply_fn: Callable, options: Options, batch_sharding=None,
               log: Callable[[str], None] = print):
    self.options = options
    self.batch_sharding = batch_sharding
    self.log = log
    platform = (batch_sharding.mesh.devices.flat[0].platform if batch_sharding is not None
                else None)
    self._network = jax.jit(functools.partial(network_logits, apply_fn, flip=options.flip),
                            compiler_options=cpu_kernels.inference_compiler_options(platform))
    self.compiled_shapes: list[tuple[int, int]] = []  # Whole-mode network inputs.
    if batch_sharding is not None:
      self._replicated = jax.sharding.NamedSharding(batch_sharding.mesh,
                                                    jax.sharding.PartitionSpec())
      self._to_batch_sharding = jax.jit(lambda x: x, out_shardings=batch_sharding)

  def put(self, array: np.ndarray) -> jax.Array:
    """A host array (the same on every process) on the device(s), replicated."""
    array = np.asarray(array)
    if self.batch_sharding is None:
      return jnp.asarray(array)
    return jax.make_array_from_callback(array.shape, self._replicated, lambda index: array[index])

  # Planning: where each image of (height, width) runs, per scale.

  def _network_shape(self, height: int, width: int, scale: float) -> tuple[str, tuple, tuple]:
    """(mode, test size, network input shape) for one image at one scale."""
    o = self.options
    size = test_size(height, width, o, scale)
    if o.mode == "slide":
      window = o.window
      return "slide", size, tuple(max(round_up(s, o.total_stride), w)
                                  for s, w in zip(size, window))
    shape = tuple(round_up(s, o.total_stride) for s in size)
    if shape in self.compiled_shapes:
      return "whole", size, shape
    if len(self.compiled_shapes) < o.max_shapes:
      self.compiled_shapes.append(shape)
      self.log(f"whole-image inference: new input shape {shape[0]}x{shape[1]} "
               f"({len(self.compiled_shapes)} of at most {o.max_shapes} compiled shapes)")
      return "whole", size, shape
    containing = [s for s in self.compiled_shapes if s[0] >= shape[0] and s[1] >= shape[1]]
    if containing:
      return "whole", size, min(containing, key=lambda s: s[0] * s[1])
    self.log(f"whole-image inference: {o.max_shapes} shapes compiled (eval.max_shapes); an "
             f"image of test size {size[0]}x{size[1]} runs in slide mode")
    window = o.window
    return "slide", size, tuple(max(round_up(s, o.total_stride), w)
                                for s, w in zip(size, window))

  def plan(self, height: int, width: int) -> tuple:
    """The grouping key of an image: canvas shape and per-scale (mode, network shape)."""
    canvas = (round_up(height, CANVAS_MULTIPLE), round_up(width, CANVAS_MULTIPLE))
    return canvas, tuple(self._network_shape(height, width, s)[::2]
                         for s in self.options.scales)

  # Running.

  def segment(self, variables: dict, items: Iterable[tuple]) -> Iterator[Group]:
    """Groups of segmented images.

    Args:
      variables: the model's variables ({"params", "batch_stats"}).
      items: (key, uint8 (H, W, C) image) pairs, any sizes.
    Yields:
      `Group`s, each image in exactly one, in no fixed order: whole mode
      batches images of one padded shape (`batch_size` of them), slide mode
      segments each image alone, its windows in batches.
    """
    pending: dict[tuple, list] = {}
    for key, image in items:
      plan = self.plan(*image.shape[:2])
      group = pending.setdefault(plan, [])
      group.append((key, image))
      if len(group) == self._group_size(plan):
        yield self._run(variables, plan, pending.pop(plan))
    for plan, group in pending.items():
      yield self._run(variables, plan, group)

  def _group_size(self, plan) -> int:
    return self.options.batch_size if all(mode == "whole" for mode, _ in plan[1]) else 1

  def _run(self, variables: dict, plan: tuple, group: list) -> Group:
    canvas_shape, per_scale = plan
    count = self._group_size(plan)  # Whole batches are padded to a fixed size.
    channels = group[0][1].shape[-1]
    canvas = np.zeros((count, *canvas_shape, channels), np.uint8)
    sizes = np.zeros((count, 2), np.int32)
    for i, (_, image) in enumerate(group):
      canvas[i, :image.shape[0], :image.shape[1]] = image
      sizes[i] = image.shape[:2]
    device_canvas = self.put(canvas)
    # Padding rows (size 0) resize from and to one pixel: finite and ignored.
    safe_sizes = self.put(np.maximum(sizes, 1))
    total = None
    for scale, (mode, shape) in zip(self.options.scales, per_scale):
      targets = np.array([test_size(h, w, self.options, scale) if h else (0, 0)
                          for h, w in sizes], np.int32)
      safe_targets = self.put(np.maximum(targets, 1))
      images = _prepare(device_canvas, safe_sizes, safe_targets, shape=shape,
                        normalization=self.options.normalization)
      if mode == "whole":
        logits = self._network(variables, self._place(images))
      else:
        logits = self._slide(variables, images)
      if total is None:
        total = self.put(np.zeros((count, *canvas_shape, logits.shape[-1]), np.float32))
      total = _to_canvas(total, logits, safe_targets, safe_sizes, shape=canvas_shape)
    if len(self.options.scales) > 1:
      total = total / len(self.options.scales)
    keys = [key for key, _ in group] + [None] * (count - len(group))
    return Group(keys, sizes, total)

  def _place(self, x: jax.Array) -> jax.Array:
    sharding = self.batch_sharding
    if sharding is not None and x.shape[0] % sharding.mesh.size == 0:
      return self._to_batch_sharding(x)
    return x

  def _slide(self, variables: dict, images: jax.Array) -> jax.Array:
    """Window-averaged logits (N, H, W, K) of normalised images (N, H, W, C)."""
    o = self.options
    window, step = o.window, o.step
    count, height, width = images.shape[:3]
    tops = window_starts(height, window[0], step[0])
    lefts = window_starts(width, window[1], step[1])
    corners = np.array([(n, y, x) for n in range(count) for y in tops for x in lefts], np.int32)
    coverage = np.zeros((height, width), np.float32)
    for y in tops:
      for x in lefts:
        coverage[y:y + window[0], x:x + window[1]] += 1
    batch = o.window_batch_size
    padded = round_up(len(corners), batch)
    weights = np.zeros(padded, np.float32)
    weights[:len(corners)] = 1
    corners = np.concatenate([corners, np.zeros((padded - len(corners), 3), np.int32)])
    total = None
    for start in range(0, padded, batch):
      chunk = self.put(corners[start:start + batch])
      logits = self._network(variables, self._place(_windows(images, chunk, window=window)))
      if total is None:
        total = self.put(np.zeros((count, height, width, logits.shape[-1]), np.float32))
      total = _add_windows(total, logits, chunk, self.put(weights[start:start + batch]))
    return total / self.put(coverage[None, :, :, None])


def to_host(tree):
  """numpy copies of device arrays; arrays spread over several processes are gathered
  (a collective: every process calls it at the same point)."""
  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      from jax.experimental import multihost_utils
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
  return jax.tree.map(fetch, tree)


def cost_note(options: Options) -> str:
  """One line on what the options run: mode, window and step, scales and flip."""
  text = f"{options.mode} inference"
  if options.mode == "slide":
    text += (f", {options.window[0]}x{options.window[1]} windows every "
             f"{options.step[0]}x{options.step[1]} px")
  scales = ", ".join(f"{s:g}" for s in options.scales)
  return text + f", scales ({scales})" + (", flip" if options.flip else "")



def _normalization(config: ml_collections.ConfigDict) -> str:
  from segjax.models import factory
  return factory.input_normalization(config)
