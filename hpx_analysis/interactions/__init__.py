"""What each layer reads for a given input: per-query interaction maps of each token mixer,
their rollout to input pixels, and the mean interaction distance per block.

``interaction_maps(model, images, settings)`` computes one model's result in memory;
``run_interactions(models, images, settings, run, hooks)`` is the job the command calls,
writing the tables, arrays, figures and the JSON record.
"""

from .blocks import MixerBlock, NoMixersError, capture_inputs, find_blocks
from .contributions import AttentionContribution, GatedConvContribution, kernel_taps
from .definitions import UnknownMixerError, decompose, is_known_mixer, mixer_tokens
from .geometry import TokenGrid, query_token, token_grid
from .job import run_interactions, write_interactions
from .maps import block_maps, interaction_maps, query_sample
from .result import BlockInteractions, InteractionResult, interactions_frame
from .rollout import Rollout
from .settings import InteractionSettings, parse_blocks, parse_maps

__all__ = [
    "InteractionSettings",
    "parse_maps",
    "parse_blocks",
    "interaction_maps",
    "run_interactions",
    "write_interactions",
    "block_maps",
    "query_sample",
    "InteractionResult",
    "BlockInteractions",
    "interactions_frame",
    "decompose",
    "is_known_mixer",
    "mixer_tokens",
    "UnknownMixerError",
    "GatedConvContribution",
    "AttentionContribution",
    "kernel_taps",
    "find_blocks",
    "capture_inputs",
    "MixerBlock",
    "NoMixersError",
    "TokenGrid",
    "token_grid",
    "query_token",
    "Rollout",
]
