"""Training and evaluation: pure step functions and the loop around them.

`train_step(state, batch) -> (state, metrics)` and
`eval_step(state, batch, totals) -> totals` are pure; `train_and_evaluate`
compiles them once over a mesh of all devices (batch split on `data`, state
replicated, state donated), and owns checkpoints, logs and pictures.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from segjax import checkpointing, losses, metrics as metrics_lib, models, optim, visualize, writers
from segjax import sharding as sharding_lib
from segjax import data as datasets
from segjax.data import normalize, pipeline, prefetch


LABELS_FILE = "labels.json"  # What the classes are, for predict.py.


class TrainState(train_state.TrainState):
  batch_stats: Any = None


def create_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  options = {key: value for key, value in config.model.items() if key != "name"}
  return models.build(config.model.name, num_classes, dtype=jnp.dtype(config.dtype), **options)


def create_train_state(config: ml_collections.ConfigDict, model: nn.Module,
                       input_shape: tuple[int, int, int], mesh) -> TrainState:
  """Initialises the state directly in its sharding on the mesh."""
  tx = optim.create_optimizer(config)

  def init(rng):
    variables = model.init({"params": rng, "dropout": rng}, jnp.zeros((1, *input_shape)),
                           train=False)
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                             batch_stats=variables.get("batch_stats", {}))

  abstract = jax.eval_shape(init, jax.random.key(config.seed))
  shardings = jax.tree.map(lambda _: sharding_lib.replicated(mesh), abstract)
  return jax.jit(init, out_shardings=shardings)(jax.random.key(config.seed))


def _pixel_mask(labels: jax.Array, ignore_index: int) -> jax.Array:
  return labels != ignore_index


def train_step(state: TrainState, batch: dict, *, loss_fn, ignore_index: int, rng: jax.Array,
               normalization: str = "unit"):
  """One optimisation step on a global batch.

  Args:
    batch: "image" uint8 (N, H, W, C), "mask" uint8 (N, H, W).
  Returns:
    (new state, metrics): scalar `loss`, `pixel_accuracy`, `grad_norm`,
    `param_norm`, `learning_rate`.
  """
  images = normalize.normalize_images(batch["image"], normalization)
  labels = batch["mask"].astype(jnp.int32)
  valid = _pixel_mask(labels, ignore_index)
  dropout_rng = jax.random.fold_in(rng, state.step)

  def compute_loss(params):
    logits, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, images, train=True,
        mutable=["batch_stats"], rngs={"dropout": dropout_rng})
    total, count = loss_fn(logits, labels, valid)
    return total / jnp.maximum(count, 1.0), (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(compute_loss, has_aux=True)(state.params)
  new_state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
  correct = jnp.sum((jnp.argmax(logits, -1) == labels) & valid)
  return new_state, {
      "loss": loss,
      "pixel_accuracy": correct / jnp.maximum(jnp.sum(valid), 1),
      "grad_norm": optax.tree.norm(grads),
      "param_norm": optax.tree.norm(new_state.params),
  }


def eval_step(state: TrainState, batch: dict, totals: dict, *, loss_fn, ignore_index: int,
              num_classes: int, normalization: str = "unit") -> dict:
  """Adds a batch's confusion matrix and loss to `totals`.

  Args:
    batch: "image" uint8 (N, H, W, C), "mask" uint8 (N, H, W), "valid" bool (N,)
      (False for padding examples, which count nowhere).
    totals: "confusion" int32 (C, C), "loss_sum" and "pixel_count" float32.
  """
  images = normalize.normalize_images(batch["image"], normalization)
  labels = batch["mask"].astype(jnp.int32)
  valid = _pixel_mask(labels, ignore_index) & batch["valid"][:, None, None]
  logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, images,
                          train=False)
  loss_sum, count = loss_fn(logits, labels, valid)
  confusion = metrics_lib.confusion_matrix(labels, jnp.argmax(logits, -1), valid, num_classes)
  return {"confusion": totals["confusion"] + confusion,
          "loss_sum": totals["loss_sum"] + loss_sum,
          "pixel_count": totals["pixel_count"] + count}


def predict_step(state: TrainState, images: jax.Array, normalization: str = "unit") -> jax.Array:
  """uint8 (N, H, W, C) -> int32 (N, H, W) class per pixel."""
  logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                          normalize.normalize_images(images, normalization), train=False)
  return jnp.argmax(logits, -1).astype(jnp.int32)


class Trainer:
  """Compiled steps of one config on one mesh."""

  def __init__(self, config: ml_collections.ConfigDict, model: nn.Module, num_classes: int,
               input_shape: tuple[int, int, int], ignore_index: int, mesh=None):
    self.config = config
    self.mesh = mesh or sharding_lib.create_mesh()
    sharding_lib.check_batch_size(config.batch_size, self.mesh)
    sharding_lib.check_batch_size(config.eval_batch_size, self.mesh, "eval_batch_size")
    self.num_classes = num_classes
    self.batch_sharding = sharding_lib.batch_sharding(self.mesh)
    self.replicated = sharding_lib.replicated(self.mesh)
    self.state = create_train_state(config, model, input_shape, self.mesh)
    self.state_sharding = jax.tree.map(lambda x: x.sharding, self.state)
    loss_fn = losses.get(config.loss)
    normalization = config.dataset.normalization
    self.train_step = jax.jit(
        functools.partial(train_step, loss_fn=loss_fn, ignore_index=ignore_index,
                          rng=jax.random.key(config.seed), normalization=normalization),
        in_shardings=(self.state_sharding, self.batch_sharding),
        out_shardings=(self.state_sharding, self.replicated), donate_argnums=0)
    self.eval_step = jax.jit(
        functools.partial(eval_step, loss_fn=loss_fn, ignore_index=ignore_index,
                          num_classes=num_classes, normalization=normalization),
        in_shardings=(self.state_sharding, self.batch_sharding, self.replicated),
        out_shardings=self.replicated, donate_argnums=2)
    self.predict_step = jax.jit(functools.partial(predict_step, normalization=normalization),
                                out_shardings=self.replicated)

  def evaluate(self, state: TrainState, eval_batches) -> tuple[dict, dict]:
    """Metrics over the whole split, and the first batch (host arrays + predictions)."""
    c = self.num_classes
    totals = jax.device_put({"confusion": jnp.zeros((c, c), jnp.int32),
                             "loss_sum": jnp.zeros((), jnp.float32),
                             "pixel_count": jnp.zeros((), jnp.float32)}, self.replicated)
    first = None
    for host_batch in eval_batches:
      batch = sharding_lib.put_batch(host_batch, self.batch_sharding)
      totals = self.eval_step(state, batch, totals)
      if first is None:
        first = dict(host_batch, prediction=self.predict_step(state, batch["image"]))
    totals = jax.device_get(totals)
    result = metrics_lib.from_confusion_matrix(totals["confusion"])
    result["loss"] = float(totals["loss_sum"] / max(totals["pixel_count"], 1.0))
    return result, first


def _write_config(config: ml_collections.ConfigDict, workdir: str, step: int) -> None:
  """Writes config.json; a resumed run with a changed config keeps the old file."""
  path = os.path.join(workdir, "config.json")
  text = config.to_json_best_effort(indent=2, sort_keys=True)
  if os.path.exists(path):
    with open(path) as f:
      if f.read() == text:
        return
    path = os.path.join(workdir, f"config_resumed_at_step_{step}.json")
    writers.log(f"config differs from {workdir}/config.json; this run's config: {path}")
  with open(path, "w") as f:
    f.write(text)


def _write_labels(data, workdir: str) -> None:
  if jax.process_index() != 0:
    return
  with open(os.path.join(workdir, LABELS_FILE), "w") as f:
    json.dump({"num_classes": data.num_classes, "class_names": list(data.class_names),
               "num_channels": data.num_channels, "ignore_index": data.ignore_index}, f, indent=2)


def _save_prediction_grid(first: dict, workdir: str, step: int, count: int, num_classes: int):
  if jax.process_index() != 0 or count <= 0:
    return
  valid = np.flatnonzero(first["valid"])[:count]
  # Process 0 holds the first rows of every global batch.
  grid = visualize.prediction_grid(first["image"][valid], first["mask"][valid],
                                   np.asarray(first["prediction"])[valid], num_classes)
  directory = os.path.join(workdir, "predictions")
  os.makedirs(directory, exist_ok=True)
  visualize.save_png(grid, os.path.join(directory, f"step_{step:07d}.png"))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains, evaluating and checkpointing as configured; resumes from `workdir`.

  Returns:
    The final evaluation metrics.
  """
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  data = datasets.load(config.dataset)
  writers.log(f"dataset {config.dataset.name}: {len(data.train)} train examples "
              f"({config.dataset.train_split}), {len(data.eval)} eval examples "
              f"({config.dataset.eval_split}), {data.num_classes} classes")
  height, width = pipeline.image_size(config.dataset)
  model = create_model(config, data.num_classes)
  trainer = Trainer(config, model, data.num_classes, (height, width, data.num_channels),
                    data.ignore_index)
  writers.log(f"model {config.model.name}: "
              f"{sum(x.size for x in jax.tree.leaves(trainer.state.params)):,} parameters; "
              f"{trainer.mesh.size} device(s) ({jax.devices()[0].platform})")

  train_iter = prefetch.DevicePrefetcher(iter(pipeline.train_loader(data.train, config)),
                                         trainer.batch_sharding, config.dataset.prefetch_batches)
  eval_batches = pipeline.EvalBatches(data.eval, (height, width), config.eval_batch_size,
                                      data.num_channels)
  manager = checkpointing.create_manager(workdir, config.max_to_keep)
  state = trainer.state
  if manager.latest_step() is not None:
    state = checkpointing.restore(manager, manager.latest_step(), state, train_iter)
    writers.log(f"resumed from {workdir}/checkpoints at step {int(state.step)}")
  start_step = int(state.step)
  _write_config(config, workdir, start_step)
  _write_labels(data, workdir)
  writer = writers.MetricWriter(workdir)
  schedule = optim.learning_rate_schedule(config)
  progress = writers.Progress(start_step, config.num_train_steps)

  pending, eval_metrics = [], None
  last_log_step, last_log_time = start_step, time.time()
  for step in range(start_step + 1, config.num_train_steps + 1):
    state, step_metrics = trainer.train_step(state, next(train_iter))
    pending.append(step_metrics)
    if step == start_step + 1:  # Leave compilation out of the throughput.
      jax.block_until_ready(step_metrics)
      last_log_step, last_log_time = step, time.time()
      pending = []
    is_last = step == config.num_train_steps
    if pending and (step % config.log_every_steps == 0 or is_last):
      summary = {k: float(np.mean(v)) for k, v in jax.device_get(
          jax.tree.map(lambda *xs: np.stack(xs), *pending)).items()}
      if not np.isfinite(summary["loss"]):
        raise FloatingPointError(f"non-finite training loss at step {step}; the last "
                                 f"checkpoint in {workdir}/checkpoints is intact")
      elapsed = time.time() - last_log_time
      summary["images_per_sec"] = (step - last_log_step) * config.batch_size / elapsed
      summary["learning_rate"] = float(schedule(step - 1))
      writer.write(step, "train", summary)
      progress.report(step, summary["loss"], summary["images_per_sec"])
      pending, last_log_step, last_log_time = [], step, time.time()
    if step % config.eval_every_steps == 0 or is_last:
      eval_metrics, first = trainer.evaluate(state, eval_batches)
      writer.write(step, "eval", eval_metrics)
      _save_prediction_grid(first, workdir, step, config.num_prediction_images, data.num_classes)
      writers.log(f"eval at step {step}: " + _format(eval_metrics))
      last_log_time = time.time()
    if step % config.checkpoint_every_steps == 0 or is_last:
      checkpointing.save(manager, step, state, train_iter)
  if eval_metrics is None:  # Nothing left to train: report the checkpoint as it is.
    eval_metrics, _ = trainer.evaluate(state, eval_batches)
    writers.log(f"training already finished at step {start_step}")
  manager.wait_until_finished()
  manager.close()
  train_iter.close()
  writer.close()
  writers.log("final eval: " + _format(eval_metrics))
  writers.log(f"outputs in {workdir}: checkpoints/, metrics.jsonl, tensorboard/, "
              "predictions/, config.json, labels.json")
  return eval_metrics


def _format(metrics: dict) -> str:
  return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
