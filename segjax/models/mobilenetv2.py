"""MobileNetV2 feature extractor with the Keras Applications layer names.

Stem `Conv1` (3x3 stride 2, 32 channels) with `bn_Conv1` and ReLU6, then the
inverted-residual blocks `expanded_conv` and `block_1` ... `block_16`, named as in
`keras.applications.MobileNetV2` (`block_3_expand`, `block_3_expand_BN`,
`block_3_depthwise`, `block_3_depthwise_BN`, `block_3_project`,
`block_3_project_BN`), so ImageNet weights load by name. The network stops at
its last requested tap, so layers after it (and their parameters) do not exist.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import convolution

# (expansion, output channels, stride) of `expanded_conv` (block 0) and blocks 1..16.
MOBILENETV2_BLOCKS = (
    (1, 16, 1),
    (6, 24, 2), (6, 24, 1),
    (6, 32, 2), (6, 32, 1), (6, 32, 1),
    (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
    (6, 96, 1), (6, 96, 1), (6, 96, 1),
    (6, 160, 2), (6, 160, 1), (6, 160, 1),
    (6, 320, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
  """Keras' `_make_divisible`: rounds a channel count to a multiple of `divisor`."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:  # Never round down by more than 10%.
    rounded += divisor
  return rounded


MOBILENETV2_BN_MOMENTUM = 0.999  # Keras MobileNetV2's BatchNorm momentum.


class MobileNetV2Encoder(nn.Module):
  """Returns the activations named in `taps` (Keras layer names), in that order.

  A tap is `Conv1_relu` or `<prefix>expand_relu`, `<prefix>depthwise_relu`,
  `<prefix>project` (before its BatchNorm) or `<prefix>project_BN` (after it, and
  after the residual addition where the block has one), with prefix
  `expanded_conv_` or `block_<i>_`. `alpha` is Keras' width multiplier.
  """
  taps: Sequence[str]
  alpha: float = 1.0
  dtype: Any = jnp.float32
  bn_momentum: float = MOBILENETV2_BN_MOMENTUM

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                     epsilon=1e-3, dtype=self.dtype, name=name)
    conv1x1 = lambda features, name: convolution.Conv(features, (1, 1), use_bias=False,
                                                      dtype=self.dtype, name=name)
    found = {}

    def tap(name, value):
      if name in self.taps:
        found[name] = value
      return len(found) == len(set(self.taps))

    x = convolution.Conv(make_divisible(32 * self.alpha), (3, 3), (2, 2), padding="SAME",
                         use_bias=False, dtype=self.dtype, name="Conv1")(x)
    x = nn.relu6(norm("bn_Conv1")(x))
    if tap("Conv1_relu", x):
      return [found[t] for t in self.taps]
    for block_id, (expansion, filters, stride) in enumerate(MOBILENETV2_BLOCKS):
      prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
      inputs, in_channels = x, x.shape[-1]
      out_channels = make_divisible(int(filters * self.alpha))
      if block_id:
        x = conv1x1(expansion * in_channels, prefix + "expand")(x)
        x = nn.relu6(norm(prefix + "expand_BN")(x))
        if tap(prefix + "expand_relu", x):
          break
      # 'SAME' pads stride-2 inputs as Keras' `correct_pad` + 'valid' does.
      x = convolution.Conv(x.shape[-1], (3, 3), (stride, stride), padding="SAME",
                           feature_group_count=x.shape[-1], use_bias=False, dtype=self.dtype,
                           name=prefix + "depthwise")(x)
      x = nn.relu6(norm(prefix + "depthwise_BN")(x))
      if tap(prefix + "depthwise_relu", x):
        break
      x = conv1x1(out_channels, prefix + "project")(x)
      if tap(prefix + "project", x):
        break
      x = norm(prefix + "project_BN")(x)
      if in_channels == out_channels and stride == 1:
        x = x + inputs
      if tap(prefix + "project_BN", x):
        break
    else:
      raise ValueError(f"MobileNetV2 has no layer(s) {sorted(set(self.taps) - set(found))}")
    return [found[t] for t in self.taps]
