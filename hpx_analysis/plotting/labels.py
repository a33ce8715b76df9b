"""Short labels shared by the figures."""

from __future__ import annotations

import pandas as pd

__all__ = ["with_weights"]


def with_weights(df: pd.DataFrame, model: str) -> str:
    """``model [weights]`` when the table records the weights (the commands' tables do)."""
    if "weights" not in df.columns:
        return model
    return f"{model} [{df.loc[df['model'] == model, 'weights'].iloc[0]}]"
