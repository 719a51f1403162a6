"""Model registry: `segjax.models.build(name, num_classes, **kwargs)`."""

from segjax.models.registry import build, names, register, total_stride
# Importing a model module registers it.
from segjax.models import segnet  # noqa: F401
from segjax.models import conv_autoencoder  # noqa: F401
from segjax.models import encoder_decoder  # noqa: F401
from segjax.models import fc_densenet  # noqa: F401
from segjax.models import fcn8  # noqa: F401
from segjax.models import mobilenetv2_unet  # noqa: F401
from segjax.models import simple_fcn  # noqa: F401
from segjax.models import unet  # noqa: F401
from segjax.models import vgg16_skip_fcn  # noqa: F401
