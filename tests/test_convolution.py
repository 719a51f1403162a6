"""`convolution.conv_general_dilated` (sliced weight gradient) against XLA's own gradient."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import convolution

NHWC = ("NHWC", "HWIO", "NHWC")


def _loss(conv, strides, padding="SAME"):
  def loss(x, kernel):
    y = conv(x, kernel, strides, padding, dimension_numbers=NHWC,
             precision=jax.lax.Precision.HIGHEST)
    return jnp.sum(jnp.sin(y))  # A cotangent that varies per output element.
  return loss


def _count_convolutions(fn, *args) -> int:
  """Convolutions XLA runs for `fn` on the default backend (CPU in the tests)."""
  return jax.jit(fn).lower(*args).compile().as_text().count(" convolution(")


# Output channels above EIGEN_MAX_FEATURES, with a remainder (36 = 16 + 16 + 4);
# the outputs (16 x 128 x 128 x 36 float32, 36 MiB) reach MIN_SLICED_GRADIENT_BYTES.
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_gradients_match_xla_and_the_weight_gradient_is_sliced(padding):
  keys = jax.random.split(jax.random.key(0), 2)
  size = 130 if padding == "VALID" else 128
  x = jax.random.normal(keys[0], (16, size, size, 2))
  kernel = jax.random.normal(keys[1], (3, 3, 2, 36))
  ours = jax.grad(_loss(convolution.conv_general_dilated, (1, 1), padding), (0, 1))
  reference = jax.grad(_loss(jax.lax.conv_general_dilated, (1, 1), padding), (0, 1))
  for got, want in zip(jax.jit(ours)(x, kernel), jax.jit(reference)(x, kernel)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))
  # 3 output-channel slices, against XLA's single weight-gradient convolution.
  assert _count_convolutions(ours, x, kernel) == _count_convolutions(reference, x, kernel) + 2


@pytest.mark.parametrize("batch,size,stride", [(16, 64, 1), (20, 128, 1), (16, 256, 2)])
def test_small_outputs_large_batches_and_strides_keep_xla_gradient(batch, size, stride):
  x = jnp.ones((batch, size, size, 2))
  kernel = jnp.ones((3, 3, 2, 36))
  ours = jax.grad(_loss(convolution.conv_general_dilated, (stride, stride)), (0, 1))
  reference = jax.grad(_loss(jax.lax.conv_general_dilated, (stride, stride)), (0, 1))
  assert _count_convolutions(ours, x, kernel) == _count_convolutions(reference, x, kernel)


def test_grouped_convolutions_keep_xla_gradient():
  x = jnp.ones((16, 128, 128, 4))
  kernel = jnp.ones((3, 3, 1, 36))
  grouped = lambda conv: lambda x, k: jnp.sum(conv(x, k, (1, 1), "SAME", dimension_numbers=NHWC,
                                                   feature_group_count=4))
  ours = jax.grad(grouped(convolution.conv_general_dilated), (0, 1))
  reference = jax.grad(grouped(jax.lax.conv_general_dilated), (0, 1))
  assert _count_convolutions(ours, x, kernel) == _count_convolutions(reference, x, kernel)
  for got, want in zip(jax.jit(ours)(x, kernel), jax.jit(reference)(x, kernel)):
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_conv_module_has_flax_parameters_and_output():
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  ours, flax_conv = convolution.Conv(8, (3, 3)), nn.Conv(8, (3, 3))
  params = flax_conv.init(jax.random.key(2), x)
  assert jax.tree.structure(ours.init(jax.random.key(2), x)) == jax.tree.structure(params)
  np.testing.assert_allclose(ours.apply(params, x), flax_conv.apply(params, x), rtol=1e-6)
