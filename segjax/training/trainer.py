"""Training and evaluation: pure step functions and the loop around them.

`train_step(state, batch) -> (state, metrics)` is pure; `Trainer` compiles it
once over the device mesh (batch split over its axes, state donated) and
evaluates at the original resolution (segjax.inference.evaluation), and
`train_and_evaluate` owns the loop, checkpoints, logs and pictures.
"""

from __future__ import annotations

import functools
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from segjax import data as datasets
from segjax.data import class_weights, normalize, pipeline, prefetch
from segjax.inference import class_report, evaluation, segmenter
from segjax.models import factory
from segjax.runtime import cpu_kernels, model_ops, sharding as sharding_lib
from segjax.scoring import losses, metrics as metrics_lib
from segjax.training import checkpointing, config_check, model_summary, optim, outputs, restored
from segjax.training import run_control, train_state, warm_start, writers
from segjax.training.train_state import TrainState


def _split_micro_batches(x: jax.Array, count: int) -> jax.Array:
  # Micro-batch k takes rows k, k + count, ...: every device holds an equal
  # share of every micro-batch, so splitting moves no data between devices.
  return x.reshape(x.shape[0] // count, count, *x.shape[1:]).swapaxes(0, 1)


def train_step(state: TrainState, batch: dict, *, objective: losses.Objective, ignore_index: int,
               rng: jax.Array, normalization: str = "unit", grad_accum_steps: int = 1,
               ema_decay: float = 0.0, frozen: tuple[str, ...] = ()):
  """One optimisation step on a global batch.

  Args:
    batch: "image" uint8 (N, H, W, C), "mask" uint8 (N, H, W).
  Returns:
    (new state, metrics): scalar `loss`, `pixel_accuracy`, `grad_norm`,
    `param_norm`, and `nonfinite` (1 when the loss, the gradient norm or an
    updated parameter was not finite: the update was then skipped and the
    state only counts the step).
    Parameters and BatchNorm statistics matching `frozen` stay as they are.
  """
  images = normalize.normalize_images(batch["image"], normalization)
  labels = batch["mask"].astype(jnp.int32)
  valid = labels != ignore_index
  dropout_rng = jax.random.fold_in(rng, state.step)
  # Normalisers of the whole global batch: micro-batch gradients then add up
  # to exactly the global batch's gradient.
  normalisers = objective.normalisers(labels, valid)

  def gradients(batch_stats, images, labels, valid, rng):
    def loss_fn(params):
      logits, updates = state.apply_fn(
          {"params": params, "batch_stats": batch_stats}, images, train=True,
          mutable=["batch_stats"], rngs={"dropout": rng})
      return objective(logits, labels, valid, normalisers), (logits, updates["batch_stats"])

    (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    # Statistics keep their stored dtype whatever the compute dtype.
    batch_stats = jax.tree.map(lambda new, old: new.astype(old.dtype), new_stats, batch_stats)
    correct = jnp.sum((losses.predicted_classes(logits) == labels) & valid, dtype=jnp.int32)
    return grads, loss, correct, batch_stats

  if grad_accum_steps == 1:
    grads, loss, correct, batch_stats = gradients(
        state.batch_stats, images, labels, valid, dropout_rng)
  else:
    def accumulate(carry, micro):
      index, *micro_batch = micro
      g, l, k, batch_stats = gradients(carry[3], *micro_batch,
                                       jax.random.fold_in(dropout_rng, index))
      return (jax.tree.map(jnp.add, carry[0], g), carry[1] + l, carry[2] + k, batch_stats), None

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    micro_batches = [jnp.arange(grad_accum_steps)] + [
        _split_micro_batches(x, grad_accum_steps) for x in (images, labels, valid)]
    (grads, loss, correct, batch_stats), _ = jax.lax.scan(
        accumulate, (zeros, jnp.zeros(()), jnp.zeros((), jnp.int32), state.batch_stats),
        micro_batches)
  if frozen:
    batch_stats = jax.tree.map(lambda keep, old, new: old if keep else new,
                               optim.frozen_mask(state.batch_stats, frozen),
                               state.batch_stats, batch_stats)
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

  updated = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  if ema_decay > 0:
    updated = updated.replace(ema_params=jax.tree.map(
        lambda e, p: ema_decay * e + (1 - ema_decay) * p, state.ema_params, updated.params))
  # Finite gradients can still overflow the parameters. Scaled by 2**-80, even the
  # largest float32 values square and add up without overflow (below 4e9 parameters),
  # so this norm is finite exactly when every parameter is. One norm, not a check
  # per leaf: XLA:CPU took minutes to fuse those for FC-DenseNet's 600 leaves.
  finite &= jnp.isfinite(optax.tree.norm(jax.tree.map(lambda x: x * 2.0**-80,
                                                      updated.params)))
  skipped = state.replace(step=state.step + 1)
  new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated, skipped)
  return new_state, {
      "loss": loss,
      "pixel_accuracy": correct / jnp.maximum(jnp.sum(valid), 1),
      "grad_norm": grad_norm,
      "param_norm": optax.tree.norm(new_state.params),
      "nonfinite": (~finite).astype(jnp.int32),
  }


class Trainer:
  """The compiled steps of one config on one mesh, and the initial state."""

  def __init__(self, config: ml_collections.ConfigDict, model: nn.Module, num_classes: int,
               input_shape: tuple[int, int, int], ignore_index: int, mesh=None):
    self.config = config
    self.mesh = mesh or sharding_lib.create_mesh(config.mesh)
    sharding_lib.check_batch_size(config.batch_size, self.mesh)
    sharding_lib.check_batch_size(config.eval_batch_size, self.mesh, "eval_batch_size")
    if config.batch_size % (config.grad_accum_steps * self.mesh.size):
      raise ValueError(f"batch_size={config.batch_size} must divide by grad_accum_steps="
                       f"{config.grad_accum_steps} x {self.mesh.size} device(s)")
    self.num_classes = num_classes
    self.batch_sharding = sharding_lib.batch_sharding(self.mesh)
    self.replicated = sharding_lib.replicated(self.mesh)
    self.state = train_state.create_train_state(config, model, input_shape, self.mesh)
    self.state_sharding = jax.tree.map(lambda x: x.sharding, self.state)
    self.objective = losses.from_config(config)
    normalization = self.normalization = normalize.mode_for(config, model)
    frozen = train_state.frozen_patterns(config, model)
    optim.check_patterns_match(self.state.params, config.optimizer.freeze)
    # The models' ops are chosen for the platform the mesh runs on (models.backend).
    for_mesh = functools.partial(model_ops.traced_for, self.mesh.devices.flat[0].platform)
    step = for_mesh(functools.partial(
        train_step, objective=self.objective, ignore_index=ignore_index,
        rng=jax.random.key(config.seed), normalization=normalization,
        grad_accum_steps=config.grad_accum_steps, ema_decay=config.ema_decay, frozen=frozen))
    build_step = lambda compiler_options: jax.jit(
        step, in_shardings=(self.state_sharding, self.batch_sharding),
        out_shardings=(self.state_sharding, self.replicated), donate_argnums=0,
        compiler_options=compiler_options)
    example_batch = lambda: sharding_lib.put_batch(pipeline.synthetic_batch(
        pipeline.local_batch_size(config.batch_size), *input_shape, num_classes),
        self.batch_sharding)
    # The kernels that run the step's convolutions on CPU, and the jitted step.
    self.cpu_conv_kernels, self.train_step = cpu_kernels.resolve(
        config.cpu_conv_kernels, build_step, self.state, example_batch, writers.log)
    self.ignore_index = ignore_index
    self.segmenter = restored.create_segmenter(config, model, input_shape[-1], self.batch_sharding)
    writers.log(f"evaluation: {segmenter.cost_note(self.segmenter.options)}, at each mask's "
                "original size")

  def evaluate(self, state: TrainState, source) -> evaluation.Result:
    """Metrics over every image of `source` at its original resolution, and the
    confusion matrix of each image (segjax.inference.evaluation)."""
    return evaluation.evaluate(self.segmenter, train_state.inference_variables(state), source,
                               num_classes=self.num_classes, ignore_index=self.ignore_index,
                               objective=self.objective)


def _summarise(pending: list[dict], first_step: int, config, workdir: str) -> dict:
  """Host copy of the metrics since the last log; stops the run on a non-finite step."""
  stacked = jax.device_get(jax.tree.map(lambda *xs: jnp.stack(xs), *pending))
  bad = np.flatnonzero(stacked["nonfinite"])
  if bad.size and not config.skip_nonfinite:
    raise FloatingPointError(
        f"non-finite loss or gradient at step {first_step + int(bad[0])}; the update was not "
        f"applied and the checkpoints in {workdir}/checkpoints are intact (set "
        "--config.skip_nonfinite=True to skip such steps)")
  summary = {k: float(np.mean(v)) for k, v in stacked.items() if k != "nonfinite"}
  summary["nonfinite_steps"] = int(bad.size)
  return summary


class Throughput:
  """Training images per second since the last log, the time evaluations took left out."""

  def __init__(self, step: int):
    self.restart(step)

  def restart(self, step: int) -> None:
    """Starts a window after `step` (a step that is complete on the device)."""
    self.step, self.started, self.excluded_s, self.paused_at = step, time.perf_counter(), 0.0, None

  def pause(self, state) -> None:
    """From here until `resume()` is not training. Waits for `state` first: the steps
    queued before still run on the device, and their time is training time."""
    jax.block_until_ready(state)
    self.paused_at = time.perf_counter()

  def resume(self) -> None:
    self.excluded_s += time.perf_counter() - self.paused_at
    self.paused_at = None

  def images_per_sec(self, step: int, batch_size: int) -> float:
    seconds = time.perf_counter() - self.started - self.excluded_s
    return (step - self.step) * batch_size / max(seconds, 1e-9)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains, evaluating and checkpointing as configured; resumes from `workdir`.

  Returns:
    The final evaluation metrics (the last ones, or {} when a stop signal came
    before any evaluation).
  """
  config_check.check(config)  # Before anything is prepared or written.
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  with run_control.WorkdirLock(workdir), run_control.StopSignal() as stop:
    return _train_and_evaluate(config, workdir, stop)


def _train_and_evaluate(config, workdir: str, stop: run_control.StopSignal) -> dict:
  data = datasets.load(config.dataset)
  config = class_weights.resolve(config, data, writers.log)
  writers.log(f"dataset {config.dataset.name}: {len(data.train)} train examples "
              f"({config.dataset.train_split}), {len(data.eval)} eval examples "
              f"({config.dataset.eval_split}), {data.num_classes} classes")
  height, width = pipeline.image_size(config.dataset)
  model = factory.create_model(config, data.num_classes)
  trainer = Trainer(config, model, data.num_classes, (height, width, data.num_channels),
                    data.ignore_index)
  writers.log(f"model {config.model.name}: "
              f"{sum(x.size for x in jax.tree.leaves(trainer.state.params)):,} parameters; "
              f"{trainer.mesh.size} device(s) ({jax.devices()[0].platform}), "
              f"{jax.process_count()} process(es)")

  order = pipeline.example_order(data, config)
  if order.factors is not None:
    writers.log(f"repeat-factor sampling: an epoch holds {order.factors.sum():.0f} examples "
                f"on average for {len(data.train)} images (repeat factors up to "
                f"{order.factors.max():.2f})")
  train_iter = prefetch.DevicePrefetcher(pipeline.train_loader(data.train, config, order),
                                         trainer.batch_sharding, config.dataset.prefetch_batches)
  manager, state = checkpointing.restore_latest_valid(
      workdir, config.max_to_keep, trainer.state, train_iter, writers.log)
  if state is None:
    state = trainer.state
    if config.model.pretrained:
      state = train_state.load_pretrained(config, model, state)
      writers.log(f"encoder initialised from {config.model.pretrained} weights")
    if config.init_from:
      state = warm_start.load(config, state, workdir, writers.log)
    model_summary.write(workdir, model, {"params": state.params, "batch_stats": state.batch_stats},
                        (height, width, data.num_channels), train_state.frozen_patterns(config, model))
  else:
    writers.log(f"resumed from {workdir}/checkpoints at step {int(state.step)}")
  start_step = int(state.step)
  outputs.write_config(config, workdir, start_step)
  outputs.write_labels(data, workdir)
  writer = writers.MetricWriter(workdir, start_step)
  best = checkpointing.BestCheckpoint(config.best_metric, workdir, writers.log)
  schedule = optim.learning_rate_schedule(config)
  progress = writers.Progress(start_step, config.num_train_steps)

  pending, eval_metrics, stopping = [], None, None
  throughput = Throughput(start_step)
  for step in range(start_step + 1, config.num_train_steps + 1):
    state, step_metrics = trainer.train_step(state, next(train_iter))
    pending.append(step_metrics)
    if step == start_step + 1:  # Leave compilation out of the throughput.
      jax.block_until_ready(step_metrics)
      throughput.restart(step)
    is_last = step == config.num_train_steps
    # Read once: a signal arriving later counts at the next check. Processes compare
    # their signals at log and checkpoint steps only, where they wait for the device anyway.
    stopping = stop.agreed(step, sync=step % config.log_every_steps == 0
                           or step % config.checkpoint_every_steps == 0)
    should_save = step % config.checkpoint_every_steps == 0 or is_last or stopping
    if step % config.log_every_steps == 0 or is_last or should_save:
      summary = _summarise(pending, step - len(pending) + 1, config, workdir)
      pending = []
      if step % config.log_every_steps == 0 or is_last:
        summary["images_per_sec"] = throughput.images_per_sec(step, config.batch_size)
        summary["learning_rate"] = float(schedule(step - 1))
        writer.write(step, "train", summary)
        progress.report(step, summary["loss"], summary["images_per_sec"])
        throughput.restart(step)
    if step % config.eval_every_steps == 0 or is_last:
      throughput.pause(state)  # Evaluation time is not training time.
      result = trainer.evaluate(state, data.eval)
      eval_metrics = result.metrics
      confusion, evaluated_step = _add_per_class(eval_metrics, data.class_names), step
      if best.update(step, state, eval_metrics):
        eval_metrics["new_best"] = True
        class_report.save_in_workdir(workdir, "best", confusion, data.class_names,
                                     f"step {step}, best {best.metric} {best.record['value']:.4f}")
      writer.write(step, "eval", eval_metrics)
      outputs.save_prediction_grid(trainer.segmenter, train_state.inference_variables(state), data.eval,
                                   result.per_image, workdir, step,
                                   config.num_prediction_images, data.num_classes)
      writers.log(f"eval at step {step}: " + _format(eval_metrics))
      throughput.resume()
    if should_save:
      checkpointing.save(manager, step, state, train_iter)
    if stopping:
      manager.wait_until_finished()
      writers.log(f"{stopping}: saved a checkpoint at step {step} in {workdir}/checkpoints; "
                  "run the same command to resume")
      break
  if eval_metrics is None and not stopping:  # Finished before: report the checkpoint as it is.
    eval_metrics = trainer.evaluate(state, data.eval).metrics
    confusion, evaluated_step = _add_per_class(eval_metrics, data.class_names), int(state.step)
  manager.wait_until_finished()
  manager.close()
  best.close()
  train_iter.close()
  writer.close()
  if eval_metrics:
    writers.log("final eval: " + _format(eval_metrics))
    writers.log(class_report.table(confusion, data.class_names))
    class_report.save_in_workdir(workdir, "final", confusion, data.class_names,
                                 f"step {evaluated_step} (last evaluation), "
                                 f"{config.dataset.eval_split}")
  writers.log(f"outputs in {workdir}: checkpoints/, metrics.jsonl, tensorboard/, "
              f"predictions/, {class_report.FOLDER}/, config.json, {outputs.LABELS_FILE}, "
              f"{model_summary.SUMMARY_FILE}")
  return eval_metrics or {}


def _add_per_class(metrics: dict, class_names) -> np.ndarray:
  """Replaces `metrics`' confusion matrix by the named per-class metrics; returns the matrix."""
  confusion = metrics.pop("confusion")
  metrics.update(metrics_lib.per_class(confusion, class_names))
  return confusion


def _format(metrics: dict) -> str:
  """The overall metrics; the per-class ones ("iou/NAME", ...) go to the table."""
  return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                   if isinstance(v, float) and "/" not in k)
