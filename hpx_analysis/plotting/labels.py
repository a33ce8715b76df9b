"""Short labels shared by the figures.

Figures carry a short weights tag (``random init (seed 0)``, ``published``, the checkpoint's
file name, ``bundled``); the full description of the weights (with, for example, why the
published weights could not be downloaded) stays in the JSON records and ``report.md``."""

from __future__ import annotations

import re
from pathlib import PurePath

import pandas as pd

__all__ = ["weights_tag", "with_weights"]

_SEED = re.compile(r"random init \(seed (-?\d+)")
_MAX_TAG = 32


def weights_tag(weights: str | None) -> str:
    """A short tag for a weights description (``LoadedModel.weights``) to put in plots."""
    text = " ".join(str(weights or "").split())
    if not text:
        return ""
    if text.startswith("random init"):
        seed = _SEED.match(text)
        return f"random init (seed {seed.group(1)})" if seed else "random init"
    if text.startswith("published"):
        return "published"
    if text.startswith("file "):
        return PurePath(text[len("file ") :]).name
    if text.startswith("bundled"):
        return "bundled"
    return text if len(text) <= _MAX_TAG else text[: _MAX_TAG - 3].rstrip() + "..."


def with_weights(df: pd.DataFrame, model: str) -> str:
    """``model [weights tag]`` when the table records the weights (the commands' tables do)."""
    if "weights" not in df.columns:
        return model
    return f"{model} [{weights_tag(df.loc[df['model'] == model, 'weights'].iloc[0])}]"
