"""`layers.conv_transpose` (phase decomposition) against `jax.lax.conv_transpose`."""

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import layers
from segjax.runtime import model_ops

HIGHEST = jax.lax.Precision.HIGHEST


@pytest.fixture(autouse=True)
def rewritten_forms():
  """These tests are about the CPU forms (segjax.runtime.model_ops): trace them on any backend."""
  with model_ops.platform_scope("cpu"):
    yield


def _reference(x, kernel, strides, padding, transpose_kernel):
  return jax.lax.conv_transpose(x, kernel, strides, padding, transpose_kernel=transpose_kernel,
                                dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HIGHEST)


def _ours(x, kernel, strides, padding, transpose_kernel):
  return layers.conv_transpose(x, kernel, strides, padding, transpose_kernel=transpose_kernel,
                               precision=HIGHEST)


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def _output_and_gradients(fn, x, kernel, cotangent, strides, padding, transpose_kernel):
  y, vjp = jax.vjp(lambda x, k: fn(x, k, strides, padding, transpose_kernel), x, kernel)
  return (y, *vjp(cotangent))


def _grid():
  """Kernel sizes x strides x paddings; transpose_kernel alternates across the grid."""
  for kernel, stride in itertools.product((1, 2, 3, 4, 7), (1, 2, 3)):
    paddings = ("SAME", "VALID", ((kernel - 1, 1), (2, kernel)))
    for index, padding in enumerate(paddings):
      yield kernel, stride, padding, bool((kernel + stride + index) % 2)


@pytest.mark.parametrize("kernel,stride,padding,transpose_kernel", list(_grid()))
def test_matches_lax_conv_transpose_with_gradients(kernel, stride, padding, transpose_kernel):
  rng = np.random.default_rng(kernel * 10 + stride)
  strides = (stride, stride + 1)  # Different strides per axis.
  x = jnp.asarray(rng.normal(size=(2, 5, 4, 3)), jnp.float32)
  kernel_shape = (kernel, kernel + 1, 4, 3) if transpose_kernel else (kernel, kernel + 1, 3, 4)
  w = jnp.asarray(rng.normal(size=kernel_shape), jnp.float32)
  out_shape = jax.eval_shape(lambda x, w: _reference(x, w, strides, padding, transpose_kernel),
                             x, w).shape
  cotangent = jnp.asarray(rng.normal(size=out_shape), jnp.float32)
  expected = _output_and_gradients(_reference, x, w, cotangent, strides, padding,
                                   transpose_kernel)
  got = _output_and_gradients(_ours, x, w, cotangent, strides, padding, transpose_kernel)
  for name, a, b in zip(("output", "gradient w.r.t. input", "gradient w.r.t. kernel"),
                        got, expected):
    assert a.shape == b.shape, name
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("max_taps", [0, 10**6], ids=["packed", "overlap_add"])
@pytest.mark.parametrize("kernel,stride,padding", [
    (3, 2, "SAME"), (4, 2, "VALID"), (2, 3, ((1, 1), (2, 2))), (7, 2, "SAME")])
def test_both_phase_forms_match_lax(monkeypatch, max_taps, kernel, stride, padding):
  """Each form on its own (the default picks one by kernel size)."""
  monkeypatch.setattr(layers, "MAX_OVERLAP_ADD_TAPS", max_taps)
  rng = np.random.default_rng(kernel + stride)
  x = jnp.asarray(rng.normal(size=(2, 5, 4, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel + 1, 3, 4)), jnp.float32)
  strides = (stride, stride + 1)
  expected = _reference(x, w, strides, padding, False)
  grads = [jax.grad(lambda x, w, fn=fn: jnp.sum(jnp.sin(fn(x, w, strides, padding, False))),
                    argnums=(0, 1))(x, w) for fn in (_reference, _ours)]
  np.testing.assert_allclose(_ours(x, w, strides, padding, False), expected, rtol=1e-4, atol=1e-4)
  for got, want in zip(*grads):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding", ["SAME", "VALID", ((1, 0), (0, 1))])
def test_kernel_equal_to_stride_is_a_matrix_product(padding):
  """U-Net's 2x2/2 upsampling: no convolution forward or backward, same values as lax."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 4, 3, 5)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(2, 3, 5, 4)), jnp.float32)
  loss = lambda fn: lambda x, w: jnp.sum(jnp.sin(fn(x, w, (2, 3), padding, False)))
  jaxpr = str(jax.make_jaxpr(jax.value_and_grad(loss(_ours), argnums=(0, 1)))(x, w))
  assert "conv_general_dilated" not in jaxpr and "dot_general" in jaxpr
  assert "scatter" not in jaxpr  # The kernel's taps are picked by slices, not a gather.
  got = jax.value_and_grad(loss(_ours), argnums=(0, 1))(x, w)
  want = jax.value_and_grad(loss(_reference), argnums=(0, 1))(x, w)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel,stride,size", [(7, 2, 8), (7, 1, 8), (3, 2, 6), (4, 2, 6)])
def test_transposed_kernel_is_the_gradient_of_same_convolution(kernel, stride, size):
  """TF `conv2d_transpose(y, W, output_shape, strides, 'SAME')` is the gradient of the
  'SAME' convolution with W; the tied decoder of `conv_autoencoder` relies on it."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(1, size, size, 2)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, 2, 5)), jnp.float32)
  conv = lambda x: jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                                precision=HIGHEST)
  y, vjp = jax.vjp(conv, x)
  cotangent = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
  expected, = vjp(cotangent)
  got = layers.conv_transpose(cotangent, w, (stride, stride), "SAME", transpose_kernel=True,
                              precision=HIGHEST)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_module_is_a_drop_in_for_flax_conv_transpose():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 4, 3)), jnp.float32)
  ours = layers.ConvTranspose(5, (4, 4), (2, 2))
  params = ours.init(jax.random.PRNGKey(0), x)
  reference = nn.ConvTranspose(5, (4, 4), (2, 2), padding="SAME",
                               kernel_init=nn.initializers.glorot_uniform())
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(
      jnp.shape, reference.init(jax.random.PRNGKey(0), x))
  np.testing.assert_allclose(ours.apply(params, x), reference.apply(params, x),
                             rtol=1e-4, atol=1e-4)


def test_tied_kernel_creates_only_a_bias():
  x = jnp.ones((1, 4, 4, 6))
  kernel = jnp.ones((3, 3, 2, 6))
  layer = layers.ConvTranspose(2, (3, 3), (2, 2), transpose_kernel=True)
  params = layer.init(jax.random.PRNGKey(0), x, kernel)["params"]
  assert set(params) == {"bias"}
  assert layer.apply({"params": params}, x, kernel).shape == (1, 8, 8, 2)
