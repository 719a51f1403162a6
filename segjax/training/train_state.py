"""The train state: parameters, optimizer state, BatchNorm statistics and EMA weights.

Created already sharded on the mesh (`create_train_state`), or as shapes only
(`abstract_train_state`) to restore a checkpoint into.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from flax.training import train_state as flax_train_state

from segjax.models import pretrained
from segjax.runtime import sharding as sharding_lib
from segjax.training import optim


class TrainState(flax_train_state.TrainState):
  batch_stats: Any = None
  ema_params: Any = None  # Set when config.ema_decay > 0; evaluation then uses it.


def _state_initializer(config: ml_collections.ConfigDict, model: nn.Module,
                       input_shape: tuple[int, int, int]):
  """rng -> the initial TrainState."""
  tx = optim.create_optimizer(config, frozen_patterns(config, model))

  def init(rng):
    variables = model.init({"params": rng, "dropout": rng}, jnp.zeros((1, *input_shape)),
                           train=False)
    params = variables["params"]
    return TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                             batch_stats=variables.get("batch_stats", {}),
                             ema_params=params if config.ema_decay > 0 else None)
  return init


def abstract_train_state(config: ml_collections.ConfigDict, model: nn.Module,
                         input_shape: tuple[int, int, int]) -> TrainState:
  """The shapes and dtypes of the initial state, computing nothing."""
  return jax.eval_shape(_state_initializer(config, model, input_shape),
                        jax.random.key(config.seed))


def create_train_state(config: ml_collections.ConfigDict, model: nn.Module,
                       input_shape: tuple[int, int, int], mesh) -> TrainState:
  """Initialises the state directly in its sharding on the mesh."""
  # One initializer for both shapes and values: the state's optimizer is part of
  # its tree structure, and another `_state_initializer` call builds another one.
  init, rng = _state_initializer(config, model, input_shape), jax.random.key(config.seed)
  shardings = sharding_lib.state_shardings(mesh, jax.eval_shape(init, rng))
  return jax.jit(init, out_shardings=shardings,
                 compiler_options=_init_compiler_options(mesh))(rng)


def _init_compiler_options(mesh) -> dict | None:
  """XLA:CPU compiles the initialiser without LLVM optimisation.

  The initialiser runs once, and most of its code is the random-number
  generator of every parameter. Compiling and running SegNet's (11.7M
  parameters) took 3.25 s with LLVM's optimisations and 0.92 s without; every
  config's was 1.0x to 7.2x faster in all
  (experiments/benchmarks/init_compile.log). The random bits are integer
  arithmetic, identical either way; floats drawn from them can differ in the
  last bit.
  """
  if mesh.devices.flat[0].platform != "cpu":
    return None
  return {"xla_backend_optimization_level": 0}


def frozen_patterns(config: ml_collections.ConfigDict, model: nn.Module) -> tuple[str, ...]:
  """The model's own frozen parameters (e.g. a pretrained encoder) and config.optimizer.freeze."""
  return tuple(getattr(model, "frozen_patterns", ())) + tuple(config.optimizer.freeze)


def load_pretrained(config: ml_collections.ConfigDict, model: nn.Module,
                    state: TrainState) -> TrainState:
  """Replaces the encoder's parameters (and statistics) by ImageNet weights."""
  if config.model.pretrained != "imagenet":
    raise ValueError(f"model.pretrained={config.model.pretrained!r}: use 'imagenet' or ''")
  variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
  variables = pretrained.load_imagenet(model, variables, config.model.pretrained_path or None)
  put = lambda new, old: jax.device_put(new, old.sharding)
  params = jax.tree.map(put, variables["params"], state.params)
  return state.replace(
      params=params, batch_stats=jax.tree.map(put, variables["batch_stats"], state.batch_stats),
      ema_params=params if state.ema_params is not None else None)


def inference_variables(state: TrainState) -> dict:
  """The variables evaluation and prediction use: the EMA parameters when kept."""
  params = state.ema_params if state.ema_params is not None else state.params
  return {"params": params, "batch_stats": state.batch_stats}
