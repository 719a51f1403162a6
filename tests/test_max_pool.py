"""`layers.max_pool` against `flax.linen.max_pool`: values, gradients, compiled ops."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import layers
from segjax.runtime import model_ops


@pytest.fixture(autouse=True)
def rewritten_forms():
  """These tests are about the CPU forms (segjax.runtime.model_ops): trace them on any backend."""
  with model_ops.platform_scope("cpu"):
    yield


CASES = [  # (input shape, window, strides, padding)
    ((2, 8, 8, 3), (2, 2), (2, 2), "VALID"),
    ((2, 13, 11, 3), (2, 2), (2, 2), "VALID"),    # Odd sizes: the last row / column dropped.
    ((2, 13, 11, 3), (2, 2), (2, 2), "SAME"),
    ((1, 16, 16, 4), (3, 3), (2, 2), ((1, 1), (1, 1))),  # fc_densenet's stem.
    ((1, 15, 9, 2), (3, 3), (2, 2), "SAME"),
    ((1, 10, 9, 2), (2, 3), (1, 2), "VALID"),
]


def _distinct_values(shape):
  """No two elements equal, so no window holds tied maxima."""
  size = int(np.prod(shape))
  values = jax.random.permutation(jax.random.key(0), size).reshape(shape)
  return values.astype(jnp.float32) - size / 2


def _value_and_grad(pool, x):
  return jax.value_and_grad(lambda x: jnp.sum(jnp.sin(pool(x))))(x)


@pytest.mark.parametrize("shape,window,strides,padding", CASES)
def test_matches_flax_max_pool_and_its_gradient(shape, window, strides, padding):
  x = _distinct_values(shape)
  expected = nn.max_pool(x, window, strides, padding)
  got = layers.max_pool(x, window, strides, padding)
  assert got.shape == expected.shape
  np.testing.assert_array_equal(got, expected)
  _, expected_grad = _value_and_grad(lambda x: nn.max_pool(x, window, strides, padding), x)
  _, got_grad = _value_and_grad(lambda x: layers.max_pool(x, window, strides, padding), x)
  np.testing.assert_array_equal(got_grad, expected_grad)


def test_tied_maxima_share_the_gradient():
  x = jnp.ones((1, 2, 2, 1))
  grad = jax.grad(lambda x: jnp.sum(layers.max_pool(x, (2, 2))))(x)
  np.testing.assert_allclose(grad, np.full((1, 2, 2, 1), 0.25))


@pytest.mark.parametrize("window,strides", [((2, 2), (2, 2)), ((3, 3), (2, 2))])
def test_gradient_compiles_without_reduce_window_or_scatter(window, strides):
  """The reason for the function: XLA's max-pool gradient is a reduce-window and a scatter."""
  x = _distinct_values((2, 16, 16, 8))
  step = jax.jit(lambda x: _value_and_grad(lambda x: layers.max_pool(x, window, strides), x))
  hlo = step.lower(x).compile().as_text()
  for op in ("reduce-window(", "select-and-scatter(", "scatter("):
    assert op not in hlo, op
  flax_hlo = jax.jit(lambda x: _value_and_grad(lambda x: nn.max_pool(x, window, strides), x)).lower(
      x).compile().as_text()
  assert any(op in flax_hlo for op in ("reduce-window(", "select-and-scatter(", "scatter(")), (
      "flax's max-pool gradient no longer uses a reduce-window or a scatter: is this still needed?")
