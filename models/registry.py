"""Names: the published checkpoints, our extra sizes and ablations, and short aliases."""

from __future__ import annotations

import timm

__all__ = ["PUBLISHED", "EXTRA", "PROBES", "ALIASES", "resolve_name", "is_hyena_model"]

PUBLISHED = (
    "hpx_former_s18",
    "hpx_former_s18_384",
    "hpx_former_s18_384_interpolate",
    "hpx_former_b36",
    "hb_former_s18",
    "hb_former_b36",
    "c_hpx_former_s18",
    "hpx_a_former_s18",
    "hb_a_former_s18",
)
EXTRA = (
    "hpx_former_s4",
    "hpx_former_s12",
    "hb_former_s4",
    "hb_former_s12",
    "convformer_s4",
    "hpx_explicit_former_s18",
    "hpx_sep_former_s18",
    "hyena_causal_former_s18",
)
# small members trained on the global-context probe task; their weights ship with the package
PROBES = (
    "hpx_probe",
    "hb_probe",
    "conv_probe",
    "attn_probe",
    "hpx_probe_s2",
    "conv_probe_s2",
    "c_hpx_probe_s2",
    "hpx_c_probe_s2",
)

ALIASES = {
    "hpx_s18": "hpx_former_s18",
    "hpx_s18_384": "hpx_former_s18_384",
    "hpx_s18_384_interpolate": "hpx_former_s18_384_interpolate",
    "hpx_b36": "hpx_former_b36",
    "hb_s18": "hb_former_s18",
    "hb_b36": "hb_former_b36",
    "c_hpx_s18": "c_hpx_former_s18",
    "hpx_a_s18": "hpx_a_former_s18",
    "hb_a_s18": "hb_a_former_s18",
    "hpx_s4": "hpx_former_s4",
    "hpx_s12": "hpx_former_s12",
    "hb_s4": "hb_former_s4",
    "hb_s12": "hb_former_s12",
    "conv_s4": "convformer_s4",
    "hpx_explicit_s18": "hpx_explicit_former_s18",
    "hpx_sep_s18": "hpx_sep_former_s18",
    "hyena_causal_s18": "hyena_causal_former_s18",
    "conv_s18": "convformer_s18",
    "conv_s36": "convformer_s36",
    "conv_b36": "convformer_b36",
    "ca_s18": "caformer_s18",
}


def resolve_name(name: str) -> str:
    """The canonical timm model name of a registered name or alias.

    Args:
        name: a timm model name or one of :data:`ALIASES` (``hpx_s18``), optionally with a
            pretrained tag (``name.tag``, kept as is).

    Returns:
        str: the canonical name, with the tag if one was given.

    Raises:
        KeyError: an unknown name; the message lists close matches.
    """
    base, dot, tag = name.strip().partition(".")
    base = ALIASES.get(base, base)
    if base in timm.list_models() or timm.is_model(base):
        return base + dot + tag
    import difflib

    candidates = list(ALIASES) + timm.list_models()
    close = difflib.get_close_matches(base, candidates, n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise KeyError(
        f"unknown model {name!r}.{hint} `hpx-analyze models` lists the HyenaPixel family; "
        f"any timm model name works too."
    )


def is_hyena_model(name: str) -> bool:
    """Whether a model belongs to this package's family.

    Args:
        name: a canonical model name (a pretrained tag ``name.tag`` is ignored).

    Returns:
        bool: True for the published, extra and probe models of :mod:`.metaformer`.
    """
    return name.partition(".")[0] in PUBLISHED + EXTRA + PROBES
