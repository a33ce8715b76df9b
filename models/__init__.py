"""Reference models of the HyenaPixel family, registered with timm on import.

``import hpx_analysis`` (or this package) makes ``timm.create_model("hpx_former_s18")``
and the other published names work. The layers compute the published models plainly;
:mod:`hpx_analysis.models.fast` holds the CPU speed paths for frozen models behind one
switch (``with fast_paths(model): ...``).

The folder is installed as ``hpx_analysis.models``; imported under any other name (``import
models`` from the repository root) it refuses before anything is registered, so there is never
a second copy of the registry or of the fast-path switch.
"""

if __name__ != "hpx_analysis.models":
    raise ImportError(
        f"import hpx_analysis.models, not {__name__}: the folder models/ is installed as hpx_analysis.models"
    )

from . import metaformer  # noqa: F401  (registers the models with timm)
from .checkpoint import resample_filter_inputs, unwrap_state_dict
from .fft_conv import direct_conv1d, direct_conv2d, fast_even_len, fft_conv1d, fft_conv2d, next_fast_len
from .introspect import iter_token_mixers, long_conv_mixers
from .metaformer import MODEL_CFGS, HyenaMetaFormer, MetaFormerBlock, MetaFormerStage
from .mixers import LongConvMixer, Truncation, is_long_conv_mixer
from .registry import ALIASES, EXTRA, PROBES, PUBLISHED, is_hyena_model, resolve_name

__all__ = [
    "HyenaMetaFormer",
    "MetaFormerBlock",
    "MetaFormerStage",
    "MODEL_CFGS",
    "LongConvMixer",
    "Truncation",
    "is_long_conv_mixer",
    "fft_conv1d",
    "fft_conv2d",
    "direct_conv1d",
    "direct_conv2d",
    "next_fast_len",
    "fast_even_len",
    "unwrap_state_dict",
    "resample_filter_inputs",
    "PUBLISHED",
    "EXTRA",
    "PROBES",
    "ALIASES",
    "resolve_name",
    "is_hyena_model",
    "iter_token_mixers",
    "long_conv_mixers",
]
