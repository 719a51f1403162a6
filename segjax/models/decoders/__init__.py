"""The decoders of segmentation_models_pytorch (SMP 0.6) as flax modules.

Each decoder takes the 5 NHWC encoder features (strides 2, 4, 8, 16, 32, the last
ones at 16 or 8 for a dilated encoder) and returns a feature map that
`SegmentationHead` turns into logits. Given the same weights (`smp_weights.load`) they
compute what SMP's decoders and heads compute (tests/test_decoders.py).
"""

from segjax.models.decoders.deeplabv3plus import DeepLabV3PlusDecoder
from segjax.models.decoders.fpn import FPNDecoder
from segjax.models.decoders.head import SegmentationHead
from segjax.models.decoders.unet import UnetDecoder

__all__ = ["DeepLabV3PlusDecoder", "FPNDecoder", "SegmentationHead", "UnetDecoder"]
