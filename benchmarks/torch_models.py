"""PyTorch versions of segjax models, for `segjax.benchmark --compare torch` (and
`segment_image`, the eager per-photo inference that
experiments/inference_benchmark/mixed_sizes.py times).

Same layers, widths, parameter counts and FLOPs as the Flax models:

  SegNet  (segjax/models/segnet.py): every convolution `conv -> ReLU ->
          BatchNorm`, stride-2 3x3 convolutions down, stride-2 3x3 transposed
          convolutions up (padding 1, output_padding 1: the 'SAME' doubling),
          classifier `conv (no bias) -> BatchNorm`; 11,737,156 parameters for
          3 input channels and 2 classes.
  UNet    (segjax/models/unet.py): double 3x3 convolutions with ReLU, 2x2
          max-pool, 2x2 stride-2 transposed convolutions, skip concatenation,
          1x1 logits; 31,031,810 parameters for 3 input channels and 2 classes.

PyTorch pads stride-2 layers symmetrically where XLA's 'SAME' pads after, so
strided layers sample a grid shifted by one pixel: the same work, not the same
numbers. BatchNorm matches Flax's (epsilon 1e-3; PyTorch's momentum is one
minus Flax's).

`TorchTrainer` runs the eager train step the benchmark times: normalise the
uint8 batch as segjax's "unit" normalisation does, forward in train mode,
cross-entropy over pixels not equal to `ignore_index`, backward, Adam. On a
GPU ("cuda") it runs as fast PyTorch training does there: a bfloat16 config
under automatic mixed precision (`torch.autocast`, float32 parameters, as
segjax keeps them), channels-last tensors, cuDNN's autotuner on.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _glorot(module: nn.Module) -> nn.Module:
  nn.init.xavier_uniform_(module.weight)
  if module.bias is not None:
    nn.init.zeros_(module.bias)
  return module


class SegNet(nn.Module):
  """Input (N, C, H, W), H and W divisible by 16; logits (N, num_classes, H, W)."""

  def __init__(self, num_classes: int, in_channels: int = 3, widths=(64, 128, 256, 512),
               width_multiplier: float = 1.0, bn_momentum: float = 0.9):
    super().__init__()
    widths = [max(1, int(w * width_multiplier)) for w in widths]
    norm = lambda c: nn.BatchNorm2d(c, eps=1e-3, momentum=1.0 - bn_momentum)
    conv = lambda cin, cout, stride=1, bias=True: _glorot(
        nn.Conv2d(cin, cout, 3, stride, padding=1, bias=bias))
    layers, channels = [], in_channels
    for width in widths:
      layers += [conv(channels, width), nn.ReLU(inplace=True), norm(width),
                 conv(width, width, 2), nn.ReLU(inplace=True), norm(width)]
      channels = width
    for width in reversed(widths):
      layers += [_glorot(nn.ConvTranspose2d(channels, width, 3, 2, padding=1, output_padding=1)),
                 nn.ReLU(inplace=True), norm(width),
                 conv(width, width), nn.ReLU(inplace=True), norm(width)]
      channels = width
    layers += [conv(channels, num_classes, bias=False), norm(num_classes)]
    self.layers = nn.Sequential(*layers)

  def forward(self, x):
    return self.layers(x)


class UNet(nn.Module):
  """Input (N, C, H, W), H and W divisible by 2**depth; logits (N, num_classes, H, W)."""

  def __init__(self, num_classes: int, in_channels: int = 3, depth: int = 4, base_width: int = 64,
               width_multiplier: float = 1.0):
    super().__init__()
    widths = [max(1, int(base_width * 2 ** level * width_multiplier)) for level in range(depth + 1)]

    def double_conv(cin, cout):
      convs = [nn.Conv2d(cin, cout, 3, padding=1), nn.Conv2d(cout, cout, 3, padding=1)]
      for c in convs:
        nn.init.kaiming_normal_(c.weight, nonlinearity="relu")
        nn.init.zeros_(c.bias)
      return nn.Sequential(convs[0], nn.ReLU(inplace=True), convs[1], nn.ReLU(inplace=True))

    self.down = nn.ModuleList()
    channels = in_channels
    for level in range(depth):
      self.down.append(double_conv(channels, widths[level]))
      channels = widths[level]
    self.bottom = double_conv(channels, widths[depth])
    channels = widths[depth]
    self.up_transpose, self.up = nn.ModuleList(), nn.ModuleList()
    for level in reversed(range(depth)):
      self.up_transpose.append(nn.ConvTranspose2d(channels, widths[level], 2, 2))
      self.up.append(double_conv(2 * widths[level], widths[level]))
      channels = widths[level]
    self.logits = nn.Conv2d(channels, num_classes, 1)

  def forward(self, x):
    skips = []
    for block in self.down:
      x = block(x)
      skips.append(x)
      x = F.max_pool2d(x, 2)
    x = self.bottom(x)
    for transpose, block, skip in zip(self.up_transpose, self.up, reversed(skips)):
      x = block(torch.cat([skip, transpose(x)], dim=1))
    return self.logits(x)


MODELS = {"segnet": SegNet, "unet": UNet}


def build(name: str, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
  """The PyTorch model for segjax's `model.name`, with the config's `model` options."""
  if name not in MODELS:
    raise ValueError(f"no PyTorch version of model {name!r}; available: {', '.join(MODELS)}")
  return MODELS[name](num_classes, in_channels, **options)


def num_parameters(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters() if p.requires_grad)


def segment_image(model: nn.Module, image: np.ndarray, size: tuple[int, int],
                  total_stride: int) -> np.ndarray:
  """One photo's class map the way eager PyTorch segments photos of any size
  (mmsegmentation's whole-image test, batch 1): the uint8 (H, W, C) image
  resized to its test `size` (bilinear, antialiased when shrinking: segjax's
  resize) and rounded to uint8 values, padded with 0 to a multiple of
  `total_stride`, normalised as segjax's "unit" (x / 127.5 - 1), the logits
  cropped, resized back to (H, W) with the same filter, arg-max: uint8 (H, W).
  `model` in eval mode. The antialiasing kernel only runs where an axis
  shrinks: enlarging, PyTorch's plain bilinear kernel is the same and faster."""
  height, width = image.shape[:2]
  size = tuple(size)
  with torch.inference_mode():
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    if size != (height, width):
      x = F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                        antialias=size[0] < height or size[1] < width).round_().clamp_(0, 255)
    pad_h = -size[0] % total_stride
    pad_w = -size[1] % total_stride
    x = F.pad(x, (0, pad_w, 0, pad_h)) / 127.5 - 1.0
    logits = model(x)[:, :, :size[0], :size[1]]
    if size != (height, width):
      logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False,
                             antialias=height < size[0] or width < size[1])
    return logits.argmax(1)[0].to(torch.uint8).numpy()


class TorchTrainer:
  """The eager train step of a segjax config's model, on a fixed batch.

  Args:
    device: "cpu" or "cuda".
    channels_last: NHWC memory layout for the model and the batch (None: on
      "cuda" only; the CPU measurements of experiments/performance.md ran NCHW).
  """

  def __init__(self, config, num_classes: int, channels: int, host_batch: dict,
               device: str = "cpu", channels_last: bool | None = None):
    if config.dtype not in ("float32", "bfloat16"):
      raise ValueError(f"the PyTorch comparison runs float32 or bfloat16 (automatic mixed "
                       f"precision) only (config dtype {config.dtype})")
    optimizer = config.optimizer if isinstance(config.optimizer, str) else config.optimizer.name
    if optimizer != "adam":
      raise ValueError(f"the PyTorch comparison runs Adam only (config optimizer {optimizer!r})")
    if "loss" in config and config.loss != "softmax_cross_entropy":
      raise ValueError(f"the PyTorch comparison runs cross-entropy only (config loss {config.loss!r})")
    if "loss_weights" in config:
      others = sorted(k for k, v in config.loss_weights.items() if v and k != "cross_entropy")
      if others or config.get("class_weights"):
        raise ValueError("the PyTorch comparison runs unweighted cross-entropy alone "
                         f"(config loss_weights {dict(config.loss_weights)})")
    from segjax.models import factory
    from segjax.data import normalize
    normalization = normalize.mode_for(config, factory.create_model(config, num_classes))
    if normalization != "unit":
      raise ValueError("the PyTorch comparison normalises as dataset.normalization='unit' only "
                       f"(this config's: {normalization!r})")
    if device == "cuda" and not torch.cuda.is_available():
      raise ValueError("the PyTorch comparison on the GPU needs PyTorch built with CUDA "
                       f"(torch {torch.__version__} sees no CUDA device)")
    torch.manual_seed(config.seed)
    self.device = torch.device(device)
    self.channels_last = device == "cuda" if channels_last is None else channels_last
    self.amp_dtype = torch.bfloat16 if config.dtype == "bfloat16" else None
    if device == "cuda":
      torch.backends.cudnn.benchmark = True  # Picks the fastest kernel per shape, once.
    skip = factory.NON_MODEL_KEYS
    options = {k: v for k, v in config.model.items() if k not in skip}
    memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
    self.model = build(config.model.name, num_classes, channels, **options).to(
        self.device, memory_format=memory_format)
    self.model.train()
    self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
    self.ignore_index = int(config.dataset.ignore_index)
    # NHWC uint8 -> NCHW uint8 (channels-last in memory if asked), as a data loader hands it over.
    images = torch.from_numpy(np.ascontiguousarray(host_batch["image"].transpose(0, 3, 1, 2)))
    self.images = images.to(self.device).contiguous(memory_format=memory_format)
    self.masks = torch.from_numpy(host_batch["mask"].astype(np.int64)).to(self.device)

  def _loss(self):
    with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                        enabled=self.amp_dtype is not None):
      x = self.images.float() / 127.5 - 1.0
      logits = self.model(x)
    return F.cross_entropy(logits.float(), self.masks, ignore_index=self.ignore_index)

  def step(self) -> tuple[float, float]:
    """One train step; returns (seconds, loss)."""
    start = time.perf_counter()
    self.optimizer.zero_grad(set_to_none=True)
    loss = self._loss()
    loss.backward()
    self.optimizer.step()
    value = loss.detach().item()  # Waits for the device: everything has run by now.
    return time.perf_counter() - start, value

  def flops_per_step(self) -> float:
    """Forward + backward FLOPs by PyTorch's FLOP counter (parameters unchanged)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
      self._loss().backward()
    self.optimizer.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())

  def peak_memory_bytes(self) -> int | None:
    """Peak GPU memory PyTorch allocated (None on the CPU)."""
    return torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None

  def describe(self) -> dict:
    return {"torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_device": str(self.device), "torch_channels_last": self.channels_last,
            "torch_amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "",
            "torch_parameters": num_parameters(self.model),
            "torch_flops_per_step": self.flops_per_step()}
