"""Page faults and system time per train step, with and without `segjax.runtime.host_memory`.

  python experiments/benchmarks/page_faults.py [--model segnet|unet] [--batch 8] [--size 128] \
      [--steps 6]

For each SEGJAX_HOST_MEMORY setting (`release`: glibc's defaults; `retain`:
what training and the benchmark set) a fresh process builds segjax's train step and the
PyTorch step of `benchmarks/torch_models.py` on the same batch, runs two of
each untimed, then `--steps` of segjax's and `--steps` of PyTorch's, and prints
per step: wall time, user and system CPU time and minor page faults
(getrusage), XLA's temporary buffer size, the median of three compilations
of the step, and the process's resident memory after segjax's timed steps. Each setting needs its own
process: the malloc parameters have to be set before JAX starts its threads.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from segjax.runtime import host_memory  # noqa: E402  (no JAX import: safe before configure())


def _measure(step, steps: int) -> dict:
  before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
  for _ in range(steps):
    step()
  after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
  return {"wall_s": wall / steps, "user_s": (after.ru_utime - before.ru_utime) / steps,
          "system_s": (after.ru_stime - before.ru_stime) / steps,
          "minor_faults": (after.ru_minflt - before.ru_minflt) / steps}


def child(args) -> dict:
  retained = host_memory.configure()
  import jax

  import alternate
  from benchmarks import torch_models
  from segjax import config as config_lib
  from segjax.data import pipeline

  config = config_lib.base_config()
  config.model.name = args.model
  config.dataset.image_size = args.size
  config.batch_size = args.batch
  host = pipeline.synthetic_batch(args.batch, args.size, args.size, 3, 2)
  trainer, batch = alternate.trainer_and_batch(config, 2, host)
  compile_seconds = []
  for _ in range(3):
    jax.clear_caches()  # A fresh compilation each time.
    start = time.perf_counter()
    compiled = trainer.train_step.lower(trainer.state, batch).compile()
    compile_seconds.append(time.perf_counter() - start)
  holder = {"state": trainer.state}

  def segjax_step():
    holder["state"], metrics = compiled(holder["state"], batch)
    jax.block_until_ready(metrics)

  torch_trainer = torch_models.TorchTrainer(config, 2, 3, host)
  for _ in range(2):
    segjax_step()
    torch_trainer.step()
  segjax = _measure(segjax_step, args.steps)
  resident = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
  return {"host_memory_retained": retained, "resident_bytes": resident, "segjax": segjax,
          "compile_s": sorted(compile_seconds)[1],
          "xla_temp_bytes": compiled.memory_analysis().temp_size_in_bytes,
          "torch": _measure(torch_trainer.step, args.steps)}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--model", default="segnet", choices=("segnet", "unet"))
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--steps", type=int, default=6)
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(child(args)))
    return
  print(f"{args.model} batch {args.batch}, {args.size}x{args.size}, {args.steps} steps of each; "
        f"load average {os.getloadavg()}", flush=True)
  for setting in ("release", "retain"):
    env = {**os.environ, host_memory.ENVIRONMENT_VARIABLE: setting}
    done = subprocess.run([sys.executable, __file__, "--child", *sys.argv[1:]], env=env,
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{host_memory.ENVIRONMENT_VARIABLE}={setting} (XLA temporary buffer "
          f"{result['xla_temp_bytes'] / 2**20:.0f} MiB; compiling the step "
          f"{result['compile_s']:.2f} s, median of 3; process resident after segjax's steps "
          f"{result['resident_bytes'] / 2**20:.0f} MiB):")
    for framework in ("segjax", "torch"):
      m = result[framework]
      print(f"  {framework:6s} wall {m['wall_s']:.3f} s, user {m['user_s']:.3f} s, system "
            f"{m['system_s']:.3f} s, {m['minor_faults']:,.0f} minor page faults per step", flush=True)
  print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
  main()
