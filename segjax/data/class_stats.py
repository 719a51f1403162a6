"""Per-image class statistics of a split: one pass over its masks, cached.

`pixel_counts(source, num_classes, ignore_index)[i, c]` is the number of
pixels of class c in record i's mask (at the size it is stored; the ignore
index counts for no class). Presence (`counts > 0`) drives the repeat-factor
sampler (segjax.data.sampling); sums over records give the class frequencies
of `class_weights` (segjax.data.class_weights).
`cached_pixel_counts` computes it once per prepared dataset and keeps it as a
.npy file under the data dir.
"""

from __future__ import annotations

import hashlib
import os

import grain
import numpy as np

from segjax.data import registry
from segjax.data.registry import RecordSource

CACHE_FOLDER = "segjax_class_stats"


class _CountPixels:
  def __init__(self, source: RecordSource, num_classes: int, ignore_index: int):
    self.source, self.num_classes, self.ignore_index = source, num_classes, ignore_index

  def __call__(self, index: int) -> np.ndarray:
    counts = np.bincount(np.asarray(self.source[index]["mask"]).reshape(-1), minlength=256)
    counts[self.ignore_index] = 0
    if counts[self.num_classes:].any():
      bad = np.flatnonzero(counts[self.num_classes:]) + self.num_classes
      raise ValueError(f"training example {index}: mask values {bad[:8].tolist()} are neither "
                       f"a class (< {self.num_classes}) nor dataset.ignore_index="
                       f"{self.ignore_index}")
    return counts[:self.num_classes].astype(np.int64)


def pixel_counts(source: RecordSource, num_classes: int, ignore_index: int) -> np.ndarray:
  """int64 (len(source), num_classes): pixels of each class in each record's mask.

  Raises ValueError for a mask value that is neither a class nor `ignore_index`.
  """
  counts = grain.MapDataset.range(len(source)).map(
      _CountPixels(source, num_classes, ignore_index))
  rows = list(counts.to_iter_dataset(grain.ReadOptions(num_threads=8, prefetch_buffer_size=64)))
  return np.stack(rows) if rows else np.zeros((0, num_classes), np.int64)


def _cache_key(source: RecordSource, num_classes: int, ignore_index: int) -> str:
  """Names the split (sources describe themselves stably, as grain requires) and
  its content: a changed dataset under the same name gets a new file."""
  digest = hashlib.sha256(f"{source!r}|{len(source)}|{num_classes}|{ignore_index}".encode())
  for index in sorted({0, len(source) // 2, len(source) - 1}):
    digest.update(np.ascontiguousarray(source[index]["mask"]).tobytes())
  return digest.hexdigest()[:16]


def cached_pixel_counts(source: RecordSource, num_classes: int, ignore_index: int,
                        data_dir: str, dataset_name: str) -> np.ndarray:
  """`pixel_counts`, read from `<data_dir>/segjax_class_stats/` when computed before.

  With several processes, process 0 computes and writes it while the others wait.
  """
  folder = os.path.join(os.path.abspath(os.path.expanduser(data_dir)), CACHE_FOLDER)
  path = os.path.join(folder, f"{dataset_name}_{_cache_key(source, num_classes, ignore_index)}.npy")

  def compute_or_read() -> np.ndarray:
    if os.path.exists(path):
      return np.load(path)
    print(f"counting the class pixels of {len(source)} masks (once; kept in {path})", flush=True)
    counts = pixel_counts(source, num_classes, ignore_index)
    os.makedirs(folder, exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "wb") as f:
      np.save(f, counts)
    os.replace(temporary, path)  # Complete or absent, never half written.
    return counts

  return registry.prepare_once(compute_or_read, f"class statistics of {dataset_name}")
