"""Alternating timing of compiled train steps, shared by the A/B scripts here."""

from __future__ import annotations

import statistics
import time

import jax


def run(steps: dict, num_warmup: int, num_steps: int, torch_trainer=None):
  """Runs one step of each variant in turn (then PyTorch's, if given), repeatedly.

  Args:
    steps: name -> [compiled step, state, batch]; the state entry is updated.
    num_warmup: untimed rounds first.
    num_steps: timed rounds.
    torch_trainer: a `benchmarks.torch_models.TorchTrainer`, timed as "torch".

  Returns:
    (times, cpu, losses): name -> list of wall seconds, of process CPU seconds
    (timed rounds only), and of every round's loss (variants only).
  """
  names = list(steps) + ["torch"] * (torch_trainer is not None)
  times = {name: [] for name in names}
  cpu = {name: [] for name in names}
  losses = {name: [] for name in steps}
  for index in range(num_warmup + num_steps):
    for name, (compiled, state, batch) in steps.items():
      wall, process = time.perf_counter(), time.process_time()
      state, metrics = compiled(state, batch)
      jax.block_until_ready((state, metrics))
      if index >= num_warmup:
        times[name].append(time.perf_counter() - wall)
        cpu[name].append(time.process_time() - process)
      losses[name].append(float(metrics["loss"]))
      steps[name][1] = state
    if torch_trainer is not None:
      process = time.process_time()
      seconds, _ = torch_trainer.step()
      if index >= num_warmup:
        times["torch"].append(seconds)
        cpu["torch"].append(time.process_time() - process)
  return times, cpu, losses


def report(times: dict, cpu: dict, losses: dict) -> None:
  """One line per variant: median wall and CPU seconds, speed-up against the first."""
  first = next(iter(losses))
  base = statistics.median(times[first])
  for name in losses:
    median = statistics.median(times[name])
    print(f"{name:10s} median {median:.3f} s (min {min(times[name]):.3f}), "
          f"{statistics.median(cpu[name]):.2f} CPU-s, speed-up vs {first} {base / median:.2f}x; "
          f"losses {[round(v, 4) for v in losses[name][:4]]}", flush=True)
