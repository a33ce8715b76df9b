"""Token mixers of the HyenaPixel MetaFormer family."""

from .base import LongConvMixer, Truncation, centred_mask, is_long_conv_mixer
from .hyena_bidirectional import BidirectionalHyena, BidirectionalHyenaNorm, CausalHyena
from .hyena_pixel import HyenaPixel, HyenaPixelExplicit, HyenaPixelNoNorm, HyenaPixelSeparable
from .local import Attention, SepConv

__all__ = [
    "LongConvMixer",
    "Truncation",
    "centred_mask",
    "is_long_conv_mixer",
    "HyenaPixel",
    "HyenaPixelNoNorm",
    "HyenaPixelExplicit",
    "HyenaPixelSeparable",
    "BidirectionalHyena",
    "BidirectionalHyenaNorm",
    "CausalHyena",
    "SepConv",
    "Attention",
]
