"""hpx-analysis: analysis toolbench for HyenaPixel and other global-convolution vision models.

Importing this package registers the HyenaPixel model family with timm.
"""

from . import models  # noqa: F401  (registers the models with timm)

__version__ = "0.1.0"
