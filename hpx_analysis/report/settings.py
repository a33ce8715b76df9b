"""The report's two presets of settings and the choice of each model's weights (the sections
themselves are :data:`~hpx_analysis.report.sections.SECTION_TABLE`).

:data:`QUICK` (minutes on a 2-core CPU; seeded random init by default so the numbers are
reproducible anywhere) and :data:`FULL` (the paper's settings, published weights when
available).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

__all__ = [
    "UnusedModelWeightsError",
    "ReportSettings",
    "QUICK",
    "FULL",
    "weights_chooser",
]


@dataclass(frozen=True)
class ReportSettings:
    """What each section runs with. ``None`` means the command's own default."""

    name: str
    weights: str  # default WEIGHTS for every model
    erf_size: int
    erf_num_images: int
    truncation_num_images: int | None  # None: every image given
    truncation_rel_sizes: tuple[float, ...]
    truncation_batch_size: int
    runtime_resolutions: tuple[int, ...] | None
    runtime_repeats: int | None
    runtime_warmup: int | None
    runtime_mode: str = "both"
    interactions_size: int = 224
    interactions_num_images: int = 1
    interactions_queries: int = 32
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        """The settings as ``report.json`` records them.

        Returns:
            dict: field -> value, tuples as lists.
        """
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


QUICK = ReportSettings(
    name="quick",
    weights="random",
    erf_size=256,
    erf_num_images=3,
    truncation_num_images=4,
    truncation_rel_sizes=(0.25, 0.5, 1.0, 2.0),
    truncation_batch_size=4,
    runtime_resolutions=(112, 224),
    runtime_repeats=5,
    runtime_warmup=1,
    notes=(
        "seeded random init unless --model-weights says otherwise, so the numbers are the same on "
        "every machine (CI checks the committed figures/ against a fresh run)",
        "ERF: 3 images at 256 px; truncation: 4 images at the model's 224 px evaluation size, "
        "relative sizes 0.25, 0.5, 1, 2; runtime: 112 and 224 px, 1 warm-up call, then 5 to 100 timed "
        "calls per measurement (their 10th percentile; at most 2 s of calls once 5 are done)",
        "interactions: 1 image at 224 px, 32 sampled query tokens per block",
    ),
)
FULL = ReportSettings(
    name="full",
    weights="auto",
    erf_size=1024,
    erf_num_images=50,
    truncation_num_images=None,
    truncation_rel_sizes=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0),
    truncation_batch_size=16,
    runtime_resolutions=None,
    runtime_repeats=None,
    runtime_warmup=None,
    interactions_num_images=10,
    interactions_queries=256,
    notes=(
        "the paper's settings: ERF over 50 images at 1024 px (Fig. 5), truncation over every image "
        "given (the paper: the 50,000 IN-1k validation images, Fig. 7), runtime at the command's "
        "default resolutions (224..896 px on CPU, 224..2240 px on CUDA); interactions over 10 images at "
        "224 px, 256 sampled query tokens per block",
    ),
)

# ----------------------------------------------------------------------------- weights


class UnusedModelWeightsError(ValueError):
    """Weights were given for a model the report does not run (``names``: those models)."""

    def __init__(self, names: Sequence[str], known: Sequence[str]):
        self.names, self.known = list(names), sorted(known)
        super().__init__(
            f"weights given for {', '.join(self.names)}, which the report does not use "
            f"(it uses {', '.join(self.known)})"
        )


def weights_chooser(default: str, overrides: Sequence[str] | None = None):
    """A function ``alias -> "alias=WEIGHTS"``.

    Args:
        default: the weights of every model no override names.
        overrides: ``WEIGHTS`` (for every model) or ``NAME=WEIGHTS`` (one model; NAME is a
            name or alias), later ones winning.

    Returns:
        Callable[[str], str]: alias -> model spec.

    Raises:
        WeightsError: an unknown model name or weights mode.
        UnusedModelWeightsError: weights for a model no section runs.
    """
    from ..io.weights import parse_model_spec
    from .sections import SECTION_TABLE

    every = default
    per_model: dict[str, str] = {}
    for text in overrides or ():
        name, sep, value = str(text).partition("=")
        if sep:
            if not value.strip():
                parse_model_spec(text)  # raises the standard message for an empty WEIGHTS part
            per_model[parse_model_spec(name).name] = value.strip()
        else:
            every = name.strip()
    known = {parse_model_spec(a).name for section in SECTION_TABLE.values() for a in section.models}
    unused = sorted(set(per_model) - known)
    if unused:
        raise UnusedModelWeightsError(unused, known)

    def choose(alias: str) -> str:
        canonical = parse_model_spec(alias).name
        return f"{alias}={per_model.get(canonical, every)}"

    return choose
