"""Compiling and running each config's parameter initialiser, with and without LLVM's optimisations.

  python experiments/benchmarks/init_compile.py [--size 64] [CONFIG ...]

For every config (default: all of configs/), the model's `init` at a
(1, size, size, 3) input is compiled with XLA:CPU's default backend
optimisation level and with `xla_backend_optimization_level=0` (what
`train_state.create_train_state` uses on CPU), then run twice. Prints compile and
run seconds, and the largest difference between the two parameter sets.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from segjax.models import factory  # noqa: E402


def load_config(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def time_init(init, compiler_options):
  start = time.perf_counter()
  compiled = jax.jit(init, compiler_options=compiler_options).lower(jax.random.key(0)).compile()
  compiled_at = time.perf_counter()
  runs = []
  for _ in range(2):
    run_start = time.perf_counter()
    variables = jax.block_until_ready(compiled(jax.random.key(0)))
    runs.append(time.perf_counter() - run_start)
  return compiled_at - start, min(runs), variables


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("configs", nargs="*")
  args = parser.parse_args()
  paths = args.configs or sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))
  print(f"jax {jax.__version__}, input 1x{args.size}x{args.size}x3, load average {os.getloadavg()}")
  print(f"{'config':28} {'params':>8} | {'compile O2':>10} {'run O2':>7} | {'compile O0':>10} "
        f"{'run O0':>7} | {'total O2/O0':>11} | max |diff|")
  for path in paths:
    config = load_config(path)
    model = factory.create_model(config, 2)
    init = lambda rng: model.init({"params": rng, "dropout": rng},
                                  jnp.zeros((1, args.size, args.size, 3)), train=False)
    compile_default, run_default, default = time_init(init, None)
    compile_o0, run_o0, o0 = time_init(init, {"xla_backend_optimization_level": 0})
    parameters = sum(x.size for x in jax.tree.leaves(default["params"]))
    diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
               for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(o0)))
    print(f"{os.path.basename(path):28} {parameters / 1e6:7.1f}M | {compile_default:9.2f}s "
          f"{run_default:6.2f}s | {compile_o0:9.2f}s {run_o0:6.2f}s | "
          f"{(compile_default + run_default) / (compile_o0 + run_o0):10.1f}x | {diff:.1e}", flush=True)
  print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
  main()
