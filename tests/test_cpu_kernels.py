"""`config.cpu_conv_kernels`: the compiler option it sets, and autotune's choice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.runtime import cpu_kernels

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU options")


def _conv(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _step(state, batch):
  """A train step in miniature: one convolution layer, its loss, an SGD update."""
  loss, grad = jax.value_and_grad(lambda k: jnp.mean(_conv(batch, k) ** 2))(state["kernel"])
  return {"kernel": state["kernel"] - 0.1 * grad, "step": state["step"] + 1}, {"loss": loss}


def _build(options):
  return jax.jit(_step, donate_argnums=0, compiler_options=options)


def _example():
  rng = np.random.default_rng(0)
  state = {"kernel": jnp.asarray(rng.normal(size=(3, 3, 32, 32)) * 0.1, jnp.float32),
           "step": jnp.zeros((), jnp.int32)}
  return state, jnp.asarray(rng.normal(size=(2, 8, 8, 32)), jnp.float32)


@pytest.mark.parametrize("choice, on_ynnpack", [("default", True), ("eigen", False)])
def test_choice_decides_which_library_runs_convolutions(choice, on_ynnpack):
  state, batch = _example()
  name, step = cpu_kernels.resolve(choice, _build, state, None)
  assert name == choice
  hlo = step.lower(state, batch).compile().as_text()
  assert "convolution(" in hlo
  assert ("__ynn_fusion" in hlo) == on_ynnpack


def test_unknown_choice_names_the_key():
  with pytest.raises(ValueError, match="cpu_conv_kernels='fastest'"):
    cpu_kernels.resolve("fastest", _build, None, None)


def test_autotune_times_both_keeps_the_state_and_compiles_once():
  state, batch = _example()
  kernel = np.asarray(state["kernel"])
  messages = []
  name, step = cpu_kernels.resolve("autotune", _build, state, lambda: batch, messages.append)
  assert name in ("default", "eigen")
  assert messages[0].startswith("cpu_conv_kernels autotune: default ")
  assert "eigen " in messages[0] and messages[0].endswith(f"using {name}")
  # Autotune stepped a copy: the state it was given is intact and starts training.
  np.testing.assert_array_equal(np.asarray(state["kernel"]), kernel)
  new_state, metrics = step(state, batch)
  assert int(new_state["step"]) == 1
  assert step._cache_size() == 1  # Compiled while tuning, not again.
  expected = _build(None)({"kernel": jnp.asarray(kernel), "step": jnp.zeros((), jnp.int32)},
                          batch)[1]["loss"]
  np.testing.assert_allclose(float(metrics["loss"]), float(expected), rtol=1e-5)


def test_autotune_falls_back_where_jaxlib_lacks_the_option(monkeypatch):
  monkeypatch.setitem(cpu_kernels.COMPILER_OPTIONS, "eigen", {"xla_cpu_no_such_option": "1"})
  state, batch = _example()
  messages = []
  name, step = cpu_kernels.resolve("autotune", _build, state, lambda: batch, messages.append)
  assert name == "default" and "eigen unavailable" in messages[0]
  assert int(step(state, batch)[0]["step"]) == 1


def test_other_backends_keep_xla_defaults(monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  built = []
  name, _ = cpu_kernels.resolve("eigen", lambda options: built.append(options) or _build(options),
                                None, None)
  assert name == "default" and built == [None]


def test_forward_pass_options_are_for_the_cpu_only_and_keep_the_result():
  assert cpu_kernels.inference_compiler_options("gpu") is None
  assert cpu_kernels.inference_compiler_options("tpu") is None
  options = cpu_kernels.inference_compiler_options("cpu")
  assert options == cpu_kernels.INFERENCE_COMPILER_OPTIONS  # The tested jaxlib takes them.
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 16, 16, 24)).astype(np.float32)
  kernel = rng.normal(size=(3, 3, 24, 32)).astype(np.float32)
  dense = rng.normal(size=(32, 8)).astype(np.float32)

  def forward(x):  # A convolution feeding a matrix product: what YNNPACK fuses by default.
    y = jax.nn.relu(jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC")))
    return y @ dense
  np.testing.assert_allclose(jax.jit(forward, compiler_options=options)(x),
                             jax.jit(forward)(x), rtol=1e-4, atol=1e-4)
  assert not cpu_kernels._accepts((("xla_cpu_no_such_option", "1"),))
