"""Model registry: `segjax.models.build(name, num_classes, **kwargs)`."""

from segjax.models.registry import build, names, register
# Importing a model module registers it.
from segjax.models import segnet  # noqa: F401
