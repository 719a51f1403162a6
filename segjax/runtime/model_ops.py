"""Which formulation of each CPU-motivated op a model traces, per backend.

Three ops of the models were rewritten because XLA:CPU runs XLA's own form of
them slowly (experiments/performance.md):

- "conv_transpose" (`layers.conv_transpose`): "phases", the transposed
  convolution as ordinary convolutions or matrix products per output phase
  (XLA:CPU's gradient of `lax.conv_transpose` is an input-dilated convolution,
  many times slower); or "xla", `lax.conv_transpose` itself.
- "max_pool" (`layers.max_pool`): "reshape", maxima of reshapes or strided
  slices (XLA:CPU's gradient of a reduce-window max is an arg-max and a
  scatter); or "xla", `flax.linen.max_pool` (`lax.reduce_window`).
- "conv_weight_gradient" (`convolution.conv_general_dilated`): "sliced", the
  weight gradient of large stride-1 convolutions in slices of 16 output
  channels, run by XLA:CPU's Eigen kernel (a custom VJP); or "xla", the
  convolution with XLA's own gradient and no custom VJP in the graph.

On CPU each op takes its rewritten form; on every other backend XLA's: GPU and
TPU compilers have their own kernels (cuDNN's transposed convolution and
pooling), and no measurement there says the rewrites help. The choice is made
when a model is traced, for the platform that will run it:

- `platform_scope(platform)` (or `traced_for(platform, fn)`, which sets it
  whenever `fn` is traced) names that platform; `train.Trainer` sets its
  mesh's. Otherwise it is `jax.default_backend()`.
- The environment variable `SEGJAX_MODEL_OPS` overrides the choice for
  measurements: `auto` (the default: per platform), `xla` or `rewritten` (every
  op), or per op, e.g. `conv_transpose=rewritten,max_pool=xla`.

Both forms of each op compute the same function (tests/test_backend.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from typing import Callable

import jax

ENVIRONMENT_VARIABLE = "SEGJAX_MODEL_OPS"
# Op -> (its rewritten form, XLA's form).
FORMS = {
    "conv_transpose": ("phases", "xla"),
    "max_pool": ("reshape", "xla"),
    "conv_weight_gradient": ("sliced", "xla"),
}
# The platforms whose compiler the rewrites were written and measured for.
REWRITTEN_ON = ("cpu",)
OVERRIDES = ("auto", "xla", "rewritten")

_platform = contextvars.ContextVar("segjax_model_platform", default=None)


@contextlib.contextmanager
def platform_scope(platform: str | None):
  """Models traced inside choose their ops for `platform` ("cpu", "gpu", "tpu", ...)."""
  token = _platform.set(platform)
  try:
    yield
  finally:
    _platform.reset(token)


def traced_for(platform: str, fn: Callable) -> Callable:
  """`fn`, tracing its models for `platform` whenever it runs (e.g. under `jax.jit`)."""
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with platform_scope(platform):
      return fn(*args, **kwargs)
  # jit names its computation after the function (profiles, logs); a partial has no name.
  wrapped.__name__ = getattr(fn, "__name__", getattr(getattr(fn, "func", None), "__name__",
                                                     "traced"))
  return wrapped


def current_platform() -> str:
  """The platform of `platform_scope`, else JAX's default backend."""
  return _platform.get() or jax.default_backend()


def formulation(op: str, platform: str | None = None) -> str:
  """The form of `op` (a key of FORMS) to trace for `platform` (default: current_platform())."""
  if op not in FORMS:
    raise ValueError(f"unknown op {op!r}; known: {', '.join(FORMS)}")
  rewritten, xla = FORMS[op]
  override = _overrides().get(op, "auto")
  if override == "auto":
    return rewritten if (platform or current_platform()) in REWRITTEN_ON else xla
  return rewritten if override == "rewritten" else xla


def _overrides() -> dict[str, str]:
  """$SEGJAX_MODEL_OPS as {op: auto | xla | rewritten}."""
  value = os.environ.get(ENVIRONMENT_VARIABLE, "auto").strip()
  if "=" not in value:
    _check_override(value, value)
    return dict.fromkeys(FORMS, value)
  overrides = {}
  for item in filter(None, (part.strip() for part in value.split(","))):
    op, _, choice = item.partition("=")
    if op.strip() not in FORMS:
      raise ValueError(f"environment variable {ENVIRONMENT_VARIABLE}={value!r}: unknown op "
                       f"{op.strip()!r}; known: {', '.join(FORMS)}")
    _check_override(value, choice.strip())
    overrides[op.strip()] = choice.strip()
  return overrides


def _check_override(value: str, choice: str) -> None:
  if choice not in OVERRIDES:
    raise ValueError(f"environment variable {ENVIRONMENT_VARIABLE}={value!r}: expected one of "
                     f"{', '.join(OVERRIDES)}, or OP=CHOICE pairs separated by commas")
