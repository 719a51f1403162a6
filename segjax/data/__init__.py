"""Dataset registry: `segjax.data.load(config.dataset) -> SegmentationData`."""

from segjax.data.registry import SegmentationData, load, names, register
# Importing a dataset module registers it.
from segjax.data import synthetic_skin  # noqa: F401
