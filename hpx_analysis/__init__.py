"""hpx-analysis: analysis toolbench for HyenaPixel and other global-convolution vision models.

Importing this package registers the HyenaPixel model family with timm. The subpackages
``hpx_analysis.models`` and ``hpx_analysis.cli`` live in the repository's top-level folders
``models/`` and ``cli/`` and exist only in an installed package (``pip install -e .`` for a
checkout); a checkout put on ``PYTHONPATH`` without installing it fails here with that advice.
"""

from importlib.util import find_spec

if find_spec(f"{__name__}.models") is None:
    raise ImportError(
        "hpx_analysis is not installed: its models/ and cli/ folders become hpx_analysis.models and "
        "hpx_analysis.cli only through the package set-up; run `pip install -e .` in the repository root"
    )

from . import models  # noqa: E402, F401  (registers the models with timm)

__version__ = "0.1.0"
