"""DenseNet-121/169/201 feature extractor with the Keras Applications layer names.

Stem `conv1_conv` (7x7 stride 2, 64 channels, no bias) with `conv1_bn` and ReLU,
3x3 stride-2 max-pool, then four dense blocks `conv2` ... `conv5` separated by
transitions `pool2` ... `pool4` (BatchNorm, ReLU, 1x1 convolution to half the
channels, 2x2 average pool). A dense layer `<block>_block<i>` is BatchNorm, ReLU,
1x1 convolution to 4 * growth channels, BatchNorm, ReLU, 3x3 convolution to
`growth` channels, concatenated to its input. Names follow
`keras.applications.DenseNet121` (`conv2_block1_0_bn`, `conv2_block1_1_conv`,
`conv2_block1_1_bn`, `conv2_block1_2_conv`, `pool2_bn`, `pool2_conv`).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import convolution, layers

DENSENET_BLOCKS = {
    "densenet121": (6, 12, 24, 16),
    "densenet169": (6, 12, 32, 32),
    "densenet201": (6, 12, 48, 32),
}
GROWTH_RATE = 32
BN_SIZE = 4  # The 1x1 bottleneck of a dense layer has BN_SIZE * growth channels.
COMPRESSION = 0.5  # A transition keeps this fraction of the channels.


def _norm(train: bool, dtype: Any, name: str, momentum: float) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=1.001e-5,
                      dtype=dtype, name=name)


def dense_block(x: jax.Array, num_layers: int, growth_rate: int, name: str, train: bool,
                dtype: Any, bn_momentum: float = layers.KERAS_BN_MOMENTUM) -> jax.Array:
  """Keras' `dense_block`; call it inside a compact method (its layers join that module).

  Returns x with `num_layers * growth_rate` channels appended.
  """
  for index in range(1, num_layers + 1):
    prefix = f"{name}_block{index}"
    h = nn.relu(_norm(train, dtype, f"{prefix}_0_bn", bn_momentum)(x))
    h = convolution.Conv(BN_SIZE * growth_rate, (1, 1), use_bias=False, dtype=dtype,
                         name=f"{prefix}_1_conv")(h)
    h = nn.relu(_norm(train, dtype, f"{prefix}_1_bn", bn_momentum)(h))
    h = convolution.Conv(growth_rate, (3, 3), padding="SAME", use_bias=False, dtype=dtype,
                         name=f"{prefix}_2_conv")(h)
    x = jnp.concatenate([x, h], axis=-1)
  return x


class DenseNetEncoder(nn.Module):
  """Returns the outputs of the four dense blocks (`conv2_block<last>_concat` ...
  `conv5_block<last>_concat`, strides 4, 8, 16, 32), before any transition; with
  `stem_feature`, the stem's activation (`conv1_relu`, stride 2) before them.

  The final BatchNorm of the classifier network (`bn`) is not part of the encoder.
  """
  blocks: Sequence[int]
  width_multiplier: float = 1.0
  dtype: Any = jnp.float32
  bn_momentum: float = layers.KERAS_BN_MOMENTUM
  stem_feature: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    growth = max(1, int(GROWTH_RATE * self.width_multiplier))
    # Keras pads explicitly (3 then 1 pixels on every side); 'SAME' would pad 2/3.
    x = convolution.Conv(max(1, int(64 * self.width_multiplier)), (7, 7), (2, 2),
                         padding=((3, 3), (3, 3)), use_bias=False, dtype=self.dtype,
                         name="conv1_conv")(x)
    x = nn.relu(_norm(train, self.dtype, "conv1_bn", self.bn_momentum)(x))
    features = [x] if self.stem_feature else []
    # Zero padding equals -inf padding here: the input is a ReLU output.
    x = layers.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
    for stage, num_layers in enumerate(self.blocks, start=2):
      if stage > 2:
        name = f"pool{stage - 1}"
        x = nn.relu(_norm(train, self.dtype, f"{name}_bn", self.bn_momentum)(x))
        x = convolution.Conv(int(x.shape[-1] * COMPRESSION), (1, 1), use_bias=False,
                             dtype=self.dtype, name=f"{name}_conv")(x)
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
      x = dense_block(x, num_layers, growth, f"conv{stage}", train, self.dtype,
                      self.bn_momentum)
      features.append(x)
    return features
