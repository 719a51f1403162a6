"""`segjax.runtime.model_ops`: each rewritten op against XLA's own, and the choice per platform.

The equality tests run on the default device: on an accelerator they check
that both forms agree there too (experiments/accelerator/check.sh).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import convolution, layers
from segjax.runtime import model_ops

HIGHEST = jax.lax.Precision.HIGHEST


def _random(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _value_and_grads(fn, platform, *args):
  """fn's value and gradients w.r.t. every argument, traced for `platform`."""
  loss = lambda *a: jnp.sum(jnp.sin(fn(*a)))
  with model_ops.platform_scope(platform):
    jaxpr = str(jax.make_jaxpr(jax.value_and_grad(loss, argnums=tuple(range(len(args)))))(*args))
    return jax.jit(jax.value_and_grad(loss, argnums=tuple(range(len(args)))))(*args), jaxpr


def _assert_close(got, want, rtol=1e-4):
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * float(jnp.abs(b).max()))


@pytest.mark.parametrize("platform, expected", [
    ("cpu", {"conv_transpose": "phases", "max_pool": "reshape", "conv_weight_gradient": "sliced"}),
    ("gpu", {"conv_transpose": "xla", "max_pool": "xla", "conv_weight_gradient": "xla"}),
    ("tpu", {"conv_transpose": "xla", "max_pool": "xla", "conv_weight_gradient": "xla"}),
])
def test_rewritten_ops_on_cpu_only(platform, expected):
  assert {op: model_ops.formulation(op, platform) for op in model_ops.FORMS} == expected
  with model_ops.platform_scope(platform):
    assert {op: model_ops.formulation(op) for op in model_ops.FORMS} == expected


def test_traced_for_sets_the_platform_when_jit_traces():
  seen = []
  fn = model_ops.traced_for("gpu", lambda x: seen.append(model_ops.formulation("max_pool")) or x)
  jax.jit(fn)(jnp.ones(2))
  assert seen == ["xla"] and model_ops.current_platform() == jax.default_backend()


def test_environment_overrides_and_names_bad_values(monkeypatch):
  monkeypatch.setenv(model_ops.ENVIRONMENT_VARIABLE, "rewritten")
  assert model_ops.formulation("max_pool", "gpu") == "reshape"
  monkeypatch.setenv(model_ops.ENVIRONMENT_VARIABLE, "conv_transpose=xla")
  assert model_ops.formulation("conv_transpose", "cpu") == "xla"
  assert model_ops.formulation("max_pool", "cpu") == "reshape"  # Not named: per platform.
  for bad, message in (("fast", "SEGJAX_MODEL_OPS='fast'"), ("pool=xla", "unknown op 'pool'"),
                       ("max_pool=native", "expected one of auto, xla, rewritten")):
    monkeypatch.setenv(model_ops.ENVIRONMENT_VARIABLE, bad)
    with pytest.raises(ValueError, match=message):
      model_ops.formulation("max_pool")


@pytest.mark.parametrize("kernel, stride, transpose_kernel", [
    (3, 2, False),  # SegNet's: overlap-add.
    (2, 2, False),  # U-Net's: one matrix product.
    (4, 2, True),   # Packed phases, tied-weight convention.
])
def test_conv_transpose_forms_agree(kernel, stride, transpose_kernel):
  x = _random((2, 5, 4, 3), kernel)
  w = _random((kernel, kernel, 4, 3) if transpose_kernel else (kernel, kernel, 3, 4), stride)
  fn = lambda x, w: layers.conv_transpose(x, w, (stride, stride), "SAME",
                                          transpose_kernel=transpose_kernel, precision=HIGHEST)
  rewritten, rewritten_jaxpr = _value_and_grads(fn, "cpu", x, w)
  xla, xla_jaxpr = _value_and_grads(fn, "gpu", x, w)
  _assert_close(rewritten, xla)
  assert f"lhs_dilation=({stride}, {stride})" not in rewritten_jaxpr  # No input dilation.
  assert f"lhs_dilation=({stride}, {stride})" in xla_jaxpr  # lax.conv_transpose's.


@pytest.mark.parametrize("window, strides, padding", [
    ((2, 2), (2, 2), "VALID"), ((3, 3), (2, 2), ((1, 1), (1, 1)))])
def test_max_pool_forms_agree(window, strides, padding):
  # Distinct values: with ties the two gradients split differently (test_max_pool.py).
  x = jax.random.permutation(jax.random.key(0), 2 * 9 * 8 * 3).reshape(2, 9, 8, 3) / 10.0
  fn = lambda x: layers.max_pool(x, window, strides, padding)
  rewritten, rewritten_jaxpr = _value_and_grads(fn, "cpu", x)
  xla, xla_jaxpr = _value_and_grads(fn, "gpu", x)
  _assert_close(rewritten, xla, rtol=1e-6)
  assert "reduce_window" not in rewritten_jaxpr and "reduce_window_max" in xla_jaxpr


def test_conv_weight_gradient_forms_agree(monkeypatch):
  monkeypatch.setattr(convolution, "MIN_SLICED_GRADIENT_BYTES", 0)  # Tiny arrays slice too.
  x, kernel = _random((2, 8, 8, 3), 0), _random((3, 3, 3, 36), 1)
  fn = lambda x, k: convolution.conv_general_dilated(
      x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HIGHEST)
  rewritten, rewritten_jaxpr = _value_and_grads(fn, "cpu", x, kernel)
  xla, xla_jaxpr = _value_and_grads(fn, "gpu", x, kernel)
  _assert_close(rewritten, xla)
  # The weight gradient in 3 slices of <= 16 channels (36 = 16 + 16 + 4), not one convolution.
  assert "concatenate[dimension=3]" in rewritten_jaxpr and "concatenate" not in xla_jaxpr
  # Off CPU no custom VJP: XLA's forward, input and weight gradient convolutions, nothing else.
  assert xla_jaxpr.count("conv_general_dilated[") == 3
