"""Dataset registry: `segjax.data.load(config.dataset) -> SegmentationData`."""

from segjax.data.registry import SegmentationData, load, names, register
# Importing a dataset module registers it.
from segjax.data import synthetic_skin  # noqa: F401
from segjax.data import camvid, image_folder, lfw_parts, mnist_on_cifar, oxford_pet  # noqa: F401
from segjax.data import synthetic_shapes, voc2012  # noqa: F401
from segjax.data.images import DatasetError
