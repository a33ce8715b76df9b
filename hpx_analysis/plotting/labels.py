"""Short labels shared by the figures and the report's tables.

Figures carry a short weights tag (``random init (seed 0)``, ``published``, the checkpoint's
file name, ``bundled``); the full description of the weights (with, for example, why the
published weights could not be downloaded) stays in the JSON records and ``report.md``.

Stages are numbered as timm and the command line number them, from 0: ``stage 0`` in
titles and legends, ``s0`` where space is short (as in the ERF file names ``erf_<label>_s0``)."""

from __future__ import annotations

import re
from pathlib import PurePath

import pandas as pd

__all__ = ["weights_tag", "with_weights", "result_weights_tag", "stage_label", "short_weights"]

_SEED = re.compile(r"random init \(seed (-?\d+)")
_MAX_TAG = 32


def weights_tag(weights: str | None) -> str:
    """A short tag for a weights description (``LoadedModel.weights``) to put in plots.

    Args:
        weights: the description (None or empty: no tag).

    Returns:
        str: e.g. ``random init (seed 0)``, ``published``, ``bundled``, a checkpoint's file name.
    """
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
    if text.startswith("bundled snapshot"):
        step = re.search(r"step (\d+)", text)
        return f"bundled step {step.group(1)}" if step else "bundled snapshot"
    if text.startswith("bundled"):
        return "bundled"
    if "/" in text or "\\" in text:  # a bare path: its file name only
        return PurePath(text).name
    return text if len(text) <= _MAX_TAG else text[: _MAX_TAG - 3].rstrip() + "..."


def with_weights(df: pd.DataFrame, model: str) -> str:
    """``model [weights tag]`` when the table records the weights (the commands' tables do).

    Args:
        df: a table with a ``model`` and perhaps a ``weights`` column.
        model: one of its models.

    Returns:
        str: the label.
    """
    if "weights" not in df.columns:
        return model
    return f"{model} [{weights_tag(df.loc[df['model'] == model, 'weights'].iloc[0])}]"


def result_weights_tag(result) -> str:
    """The short weights tag of a result (its ``weights`` field, else ``settings["weights"]``).

    Args:
        result: e.g. an :class:`~hpx_analysis.erf.ErfResult`.

    Returns:
        str: the tag, empty when the result does not record its weights.
    """
    weights = getattr(result, "weights", "") or (getattr(result, "settings", None) or {}).get("weights")
    return weights_tag(weights)


def short_weights(table: pd.DataFrame) -> pd.DataFrame:
    """The table with its ``weights`` column as short tags, for CSV rows (the full description,
    e.g. why the published weights could not be downloaded, belongs once in the JSON record).

    Args:
        table: a result table (unchanged; one without a ``weights`` column is returned as is).

    Returns:
        pd.DataFrame: a copy with ``weights`` replaced by :func:`weights_tag` of each value.
    """
    if "weights" not in table.columns:
        return table
    return table.assign(weights=[weights_tag(w) if isinstance(w, str) else w for w in table["weights"]])


def stage_label(stage: int, short: bool = False) -> str:
    """A stage as the command line's ``--stage`` / ``--stages`` take it (0-based).

    Args:
        stage: the stage index (-1: the untruncated model of a truncation sweep).
        short: ``s0`` instead of ``stage 0``.

    Returns:
        str: the label.
    """
    stage = int(stage)
    if stage < 0:
        return "untruncated"
    return f"s{stage}" if short else f"stage {stage}"
