"""What every dataset gives: random access to records, and its prepared splits."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, Sequence


class RecordSource(Protocol):
  """Random access to records `{"image": uint8 (H, W, C), "mask": uint8 (H, W, 1)}`."""

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class SegmentationData:
  """The prepared splits of a dataset and what its labels mean."""
  train: RecordSource
  eval: RecordSource
  num_classes: int
  class_names: Sequence[str]
  num_channels: int = 3
  ignore_index: int = 255
