"""Segmentation of images at their own size: whole-image or sliding-window inference,
flip and multi-scale test-time augmentation (mmsegmentation's conventions).

One module for every consumer (training-time evaluation, `segjax.evaluate`,
`segjax.predict`, export). It needs the model's apply function and variables,
nothing of the training loop.

- `model_logits` is the pure, jittable core: uint8 images -> float32 logits of
  the model on exactly those pixels (normalisation inside, optional flip).
- `Segmenter` runs it on images of any size. Each image is resized to its test
  size (`test_size`: the training resize policy, times each of `scales`) with
  training's own resize (`segjax.data.resampling.resize_image`: bilinear,
  antialiased when shrinking), then
  - whole: padded with 0 (before normalisation, as training pads its crops)
    to a multiple of the model's total stride, and further to a shape shared
    with images of other sizes (`planning.plan_buckets` weighs padding against
    compilations over the images read ahead); batches of up to `batch_size`
    images (`planning.batch_limit`), a last one of a power-of-two size; at
    most `max_shapes` shapes compiled (logged); an image no compiled shape
    holds then runs in slide mode;
  - slide: windows of the training crop size every `stride` pixels over the
    image's own padded extent, batched, their logits added up and divided by
    the number of windows covering each pixel; the network is compiled for one
    window shape only.
  Logits are resized with the same filter (`resampling.resize_batch`) back to
  the image's original size and averaged over the scales; the arg-max of that
  average is the prediction. Padding adds no logits to an image's pixels, but
  what the network computes near an image's bottom and right edges can see
  more or less padding (within its receptive field) depending on the shape it
  shares.

Images of one batch lie in the top-left corner of a zero "canvas" (original
height and width rounded up to `CANVAS_MULTIPLE`, then planned into a few
shared shapes as the network inputs are), so that the small programs around
the network (resize back, average, arg-max, scoring) compile once per canvas
shape and not per image size.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from segjax.data import normalize, pipeline, resampling
from segjax.inference import planning
from segjax.runtime import cpu_kernels
from segjax.scoring import losses

MODES = ("whole", "slide")
RESIZE_POLICIES = ("squash", "keep_ratio")
CANVAS_MULTIPLE = 32
# Images read ahead and planned together: this many batches, at most this many pixels.
LOOKAHEAD_BATCHES = 8
LOOKAHEAD_PIXELS = 2 ** 27
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
    batch_size: images per whole-mode batch at most (eval_batch_size); fewer
      where inputs are large (`planning.batch_limit`: one 384x288 image per
      call on a CPU).
    window_batch_size: windows per slide-mode batch (eval.window_batch_size).
    max_shapes: whole-mode padded shapes compiled at most (eval.max_shapes).
    normalization: dataset.normalization, or the pretrained encoder's (normalize.mode_for);
      `PIXELS` for a network that normalises itself.
    total_stride: inputs are padded to a multiple of it (the model's).
    compile_cost_pixels: what a new whole-mode shape costs, in padded network
      pixels, when images are planned into shared shapes (`planning`); 0: the
      platform's default (`planning.compile_cost_pixels`).
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
  compile_cost_pixels: int = 0

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


def _pixel_logits(apply_fn: Callable, variables: dict, pixels: jax.Array, sizes: jax.Array, *,
                  flip: bool, normalization: str) -> jax.Array:
  """Logits of uint8 (N, H, W, C) padded images of `sizes` (N, 2) (normalised as
  `_masked_normalize`): the whole-mode network call, one compilation per input shape."""
  return network_logits(apply_fn, variables, _masked_normalize(pixels, sizes, normalization),
                        flip)


_normalize = jax.jit(_masked_normalize, static_argnums=2)


@functools.partial(jax.jit, donate_argnums=0)
def _to_canvas(total, logits, rows, cols):
  """`total` (N, H, W, K) (None: zeros) plus the logits (N, h, w, K) resized with each
  image's taps `rows` (indices, weights (N, H, T)) and `cols` (N, W, T') to its original
  size (`resampling.resize_batch`; zero past it)."""
  resized = resampling.resize_batch(logits, rows, cols)
  return resized if total is None else total + resized


@functools.partial(jax.jit, static_argnames=("shape",), donate_argnums=0)
def _paste(total, logits, sizes, *, shape):
  """`_to_canvas` for logits already at their images' `sizes` (N, 2): cropped or padded
  to `shape`, zero outside each image."""
  logits = logits[:, :shape[0], :shape[1]]
  logits = jnp.pad(logits, ((0, 0), (0, shape[0] - logits.shape[1]),
                            (0, shape[1] - logits.shape[2]), (0, 0)))
  pasted = jnp.where(_inside(sizes, shape)[..., None], logits, 0.0)
  return pasted if total is None else total + pasted


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


@dataclasses.dataclass
class _Item:
  """An image waiting to be segmented: per scale its test size and network input shape
  ("whole": rounded up to the stride; "slide": at least a window)."""
  order: int
  key: object
  image: np.ndarray
  targets: list
  shapes: list


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
                else jax.default_backend())
    compiler_options = cpu_kernels.inference_compiler_options(platform)
    self._network = jax.jit(functools.partial(network_logits, apply_fn, flip=options.flip),
                            compiler_options=compiler_options)
    self._whole = jax.jit(functools.partial(_pixel_logits, apply_fn, flip=options.flip,
                                            normalization=options.normalization),
                          compiler_options=compiler_options)
    self.platform = platform
    self.compile_cost = options.compile_cost_pixels or planning.compile_cost_pixels(platform)
    self.compiled_shapes: list[tuple[int, int]] = []  # Whole-mode network inputs.
    self.canvases: list[tuple[int, int]] = []  # Shapes of the logits at the original size.
    self.slide_shapes: list[tuple[int, int]] = []  # Of slide-mode images (test size).
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

  # Planning: which images run together, at which padded shapes.

  def _item(self, order: int, key, image: np.ndarray) -> _Item:
    o = self.options
    targets, shapes = [], []
    for scale in o.scales:
      size = test_size(*image.shape[:2], o, scale)
      padded = tuple(round_up(s, o.total_stride) for s in size)
      targets.append(size)
      shapes.append(("slide", self._slide_extent(size)) if o.mode == "slide"
                    else ("whole", padded))
    return _Item(order, key, image, targets, shapes)

  def _slide_extent(self, size) -> tuple[int, int]:
    """The padded size an image of test `size` is covered with windows over."""
    return tuple(max(round_up(s, self.options.total_stride), w)
                 for s, w in zip(size, self.options.window))

  def _plan_whole(self, items: list[_Item]) -> dict:
    """{exact whole-mode shape: padded shape, or None (slide)} for `items`; new shapes
    are logged and count as compiled from here on."""
    counts = collections.Counter(shape for item in items
                                 for mode, shape in item.shapes if mode == "whole")
    if not counts:
      return {}
    o = self.options
    plan = planning.plan_buckets(counts, self.compiled_shapes, self.compile_cost,
                                 max(o.max_shapes - len(self.compiled_shapes), 0))
    for shape in sorted({s for s in plan.values() if s is not None} - set(self.compiled_shapes)):
      self.compiled_shapes.append(shape)
      self.log(f"whole-image inference: new input shape {shape[0]}x{shape[1]} "
               f"({len(self.compiled_shapes)} of at most {o.max_shapes} compiled shapes)")
    return plan

  def _plan_arrays(self, shapes: list, known: list) -> dict:
    """{shape: shape to pad it to} for the arrays of the programs around the network
    (canvases, slide-mode images), at their own compilation cost; `known` (the shapes
    planned before) is extended."""
    plan = planning.plan_buckets(collections.Counter(shapes), known,
                                 planning.canvas_compile_cost_pixels(self.platform),
                                 max_new=len(shapes))
    known += sorted(set(plan.values()) - set(known))
    return plan

  def _batches(self, items: list[_Item], final: bool) -> tuple[list, list[_Item]]:
    """([(plan key, items of one call, batch rows)], items left for a fuller batch).

    A plan key is (canvas shape, per scale (mode, padded shape)): "whole" at
    the planned network input shape, "slide" on an array holding the image's
    window extent (`_slide_extent`), both shared with images of other sizes.
    """
    whole = self._plan_whole(items)
    per_item = []
    for item in items:
      per_scale = []
      for index, (mode, shape) in enumerate(item.shapes):
        if mode == "whole" and whole[shape] is not None:
          per_scale.append(("whole", whole[shape]))
        else:  # Slide mode, or no compiled shape holds the image: windows.
          per_scale.append(("slide", self._slide_extent(item.targets[index])))
      per_item.append(per_scale)
    slide = self._plan_arrays([shape for per_scale in per_item for mode, shape in per_scale
                               if mode == "slide"], self.slide_shapes)
    canvases = self._plan_arrays(
        [tuple(round_up(v, CANVAS_MULTIPLE) for v in item.image.shape[:2]) for item in items],
        self.canvases)
    keyed: dict[tuple, list[_Item]] = {}
    for item, per_scale in zip(items, per_item):
      canvas = canvases[tuple(round_up(v, CANVAS_MULTIPLE) for v in item.image.shape[:2])]
      key = tuple((mode, shape if mode == "whole" else slide[shape]) for mode, shape in per_scale)
      keyed.setdefault((canvas, key), []).append(item)
    batches, left = [], []
    for key, members in keyed.items():
      size = self._batch_limit(key[1])
      while len(members) >= size or (final and members):
        batches.append((key, members[:size], planning.batch_size(len(members[:size]), size)))
        members = members[size:]
      left += members
    if not batches and left:  # Nothing full in view: the largest group runs anyway.
      key = max(keyed, key=lambda k: len(keyed[k]))
      size = self._batch_limit(key[1])
      batches.append((key, keyed[key], planning.batch_size(len(keyed[key]), size)))
      running = {item.order for item in keyed[key]}
      left = [item for item in left if item.order not in running]
    return batches, sorted(left, key=lambda item: item.order)

  def _batch_limit(self, per_scale: tuple) -> int:
    """Images per call: slide mode one (its windows are batched), whole mode up to
    `batch_size`, fewer for large inputs (`planning.batch_limit`)."""
    if any(mode == "slide" for mode, _ in per_scale):
      return 1
    pixels = max(shape[0] * shape[1] for _, shape in per_scale)
    return planning.batch_limit(pixels, self.options.batch_size, self.platform)

  # Running.

  def segment(self, variables: dict, items: Iterable[tuple]) -> Iterator[Group]:
    """Groups of segmented images.

    Args:
      variables: the model's variables ({"params", "batch_stats"}).
      items: (key, uint8 (H, W, C) image) pairs, any sizes.
    Yields:
      `Group`s, each image in exactly one, in no fixed order. Up to
      `LOOKAHEAD_BATCHES` batches of images (at most `LOOKAHEAD_PIXELS`
      pixels) are read ahead and planned together: whole mode batches up to
      `batch_size` images padded to a shared shape (a batch of fewer images
      has a power-of-two size), slide mode segments each image alone, its
      windows in batches.
    """
    pending, pixels = [], 0
    for order, (key, image) in enumerate(items):
      pending.append(self._item(order, key, image))
      pixels += image.shape[0] * image.shape[1]
      if len(pending) >= LOOKAHEAD_BATCHES * self.options.batch_size or (
          pixels >= LOOKAHEAD_PIXELS):
        batches, pending = self._batches(pending, final=False)
        pixels = sum(item.image.shape[0] * item.image.shape[1] for item in pending)
        for batch in batches:
          yield self._run(variables, *batch)
    for batch in self._batches(pending, final=True)[0]:
      yield self._run(variables, *batch)

  def _run(self, variables: dict, plan: tuple, members: list[_Item], count: int) -> Group:
    o = self.options
    canvas_shape, per_scale = plan
    sizes = np.zeros((count, 2), np.int32)
    sizes[:len(members)] = [item.image.shape[:2] for item in members]
    total = None
    for index, (mode, shape) in enumerate(per_scale):
      targets = np.zeros((count, 2), np.int32)
      targets[:len(members)] = [item.targets[index] for item in members]
      pixels = self.put(network_inputs([item.image for item in members], targets, shape))
      safe_targets = self.put(np.maximum(targets, 1))
      if mode == "whole":
        logits = self._whole(variables, self._place(pixels), safe_targets)
      else:
        if o.mode == "whole":
          self.log(f"whole-image inference: {o.max_shapes} shapes compiled (eval.max_shapes); "
                   f"an image of test size {targets[0, 0]}x{targets[0, 1]} runs in slide mode")
        logits = self._slide(variables, _normalize(pixels, safe_targets, o.normalization),
                             targets)
      total = self._to_canvas(total, logits, targets, sizes, canvas_shape)
    if len(o.scales) > 1:
      total = total / len(o.scales)
    keys = [item.key for item in members] + [None] * (count - len(members))
    return Group(keys, sizes, total)

  def _to_canvas(self, total, logits: jax.Array, targets: np.ndarray, sizes: np.ndarray,
                 shape: tuple[int, int]) -> jax.Array:
    """`total` plus the logits of images at test size `targets` resized to `sizes`,
    on a canvas of `shape`."""
    if np.array_equal(targets, sizes):
      return _paste(total, logits, self.put(sizes), shape=shape)
    axes = [_stacked_taps(targets[:, axis], sizes[:, axis], shape[axis]) for axis in (0, 1)]
    return _to_canvas(total, logits, *[tuple(self.put(a) for a in pair) for pair in axes])

  def _place(self, x: jax.Array) -> jax.Array:
    sharding = self.batch_sharding
    if sharding is not None and x.shape[0] % sharding.mesh.size == 0:
      return self._to_batch_sharding(x)
    return x

  def _slide(self, variables: dict, images: jax.Array, targets: np.ndarray) -> jax.Array:
    """Window-averaged logits (N, H, W, K) of normalised images (N, H, W, C), each
    image of test size `targets[i]` covered by windows over its `_slide_extent`."""
    o = self.options
    window, step = o.window, o.step
    count, height, width = images.shape[:3]
    corners = []
    coverage = np.zeros((count, height, width), np.float32)
    for n, size in enumerate(targets):
      if not size[0]:
        continue
      extent = self._slide_extent(size)
      for y in window_starts(extent[0], window[0], step[0]):
        for x in window_starts(extent[1], window[1], step[1]):
          corners.append((n, y, x))
          coverage[n, y:y + window[0], x:x + window[1]] += 1
    corners = np.array(corners, np.int32)
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
    return total / self.put(np.maximum(coverage, 1)[..., None])


def network_inputs(images: list[np.ndarray], targets: np.ndarray,
                   shape: tuple[int, int]) -> np.ndarray:
  """uint8 (N, *shape, C): image i resized to `targets[i]` as training resizes
  (`resampling.resize_image`) in the top-left corner, 0 elsewhere (and in rows past the
  images: batch padding)."""
  pixels = np.zeros((len(targets), *shape, images[0].shape[-1]), np.uint8)
  for i, image in enumerate(images):
    height, width = targets[i]
    pixels[i, :height, :width] = resampling.resize_image(image, (int(height), int(width)))
  return pixels


def _stacked_taps(sources: np.ndarray, targets: np.ndarray, length: int) -> tuple:
  """`resampling.taps` of each image's axis from `sources[i]` to `targets[i]` pixels,
  stacked: int32 and float32 (N, length, T), T a power of two (few compiled shapes);
  zero weights past each target and for padding rows (target 0)."""
  per_image = [resampling.taps(int(s), int(t)) if t else None
               for s, t in zip(sources, targets)]
  needed = max([taps[0].shape[1] for taps in per_image if taps is not None] + [1])
  width = 1 << (needed - 1).bit_length()
  index = np.zeros((len(per_image), length, width), np.int32)
  weight = np.zeros((len(per_image), length, width), np.float32)
  for i, taps in enumerate(per_image):
    if taps is not None:
      rows, used = taps[0].shape
      index[i, :rows, :used], weight[i, :rows, :used] = taps
  return index, weight


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
