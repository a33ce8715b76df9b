"""hpx-analysis: analysis toolbench for HyenaPixel and other global-convolution vision models.

Importing this package registers the HyenaPixel model family with timm. The subpackages
``hpx_analysis.models`` and ``hpx_analysis.cli`` live in the repository's top-level folders
``models/`` and ``cli/``: an install maps them (``pip install -e .`` for a checkout), and a
checkout imported without one maps them here (:mod:`._checkout`).
"""

from pathlib import Path

from ._checkout import map_checkout_folders

map_checkout_folders(__name__, Path(__file__).resolve().parent)

from . import models  # noqa: E402, F401  (registers the models with timm)

__version__ = "0.1.0"
