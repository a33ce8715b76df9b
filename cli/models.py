"""``hpx-analyze models``: the HyenaPixel family and its aliases at a glance."""

from __future__ import annotations

import json
from itertools import groupby
from typing import Annotated

import timm
import torch
import typer
from rich.table import Table

from hpx_analysis.io.weights import published_weights_cached
from hpx_analysis.models import ALIASES, EXTRA, PROBES, PUBLISHED, iter_token_mixers
from hpx_analysis.probe.bundled import bundled_path

from .common import stdout_console

__all__ = ["models", "model_rows", "mixer_summary", "count_parameters"]


def _build_without_weights(name: str) -> torch.nn.Module:
    """The model's modules with the right shapes but no storage (meta device), so even B36 is quick."""
    with torch.device("meta"):
        return timm.create_model(name)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def mixer_summary(model: torch.nn.Module) -> list[str]:
    """Per stage, the token mixer classes in block order, runs collapsed: ``"HyenaPixel ×3"``."""
    stages: dict[int, list[str]] = {}
    for stage, _block, mixer in iter_token_mixers(model):
        stages.setdefault(stage, []).append(type(mixer).__name__)
    return [
        " + ".join(f"{cls} ×{len(list(run))}" for cls, run in groupby(classes)) for _, classes in sorted(stages.items())
    ]


def model_rows() -> list[dict]:
    """One row per registered HyenaPixel-family model, then per timm model an alias points to."""
    family = list(PUBLISHED + EXTRA + PROBES)
    others = [target for target in dict.fromkeys(ALIASES.values()) if target not in family]
    rows = []
    for name in family + others:
        model = _build_without_weights(name)
        cfg = timm.models.get_pretrained_cfg(name)
        hub_id = getattr(cfg, "hf_hub_id", None) or None
        rows.append(
            {
                "name": name,
                "aliases": sorted(alias for alias, target in ALIASES.items() if target == name),
                "family": "hyenapixel" if name in family else "timm",
                "params": count_parameters(model),
                "mixers": mixer_summary(model),
                "published": name in PUBLISHED if name in family else hub_id is not None,
                "hub_id": hub_id,
                "cached": published_weights_cached(name) if hub_id else False,
                "bundled": bundled_path(name) is not None,
            }
        )
    return rows


def _compact_mixers(stages: list[str]) -> str:
    """Stages with the same single mixer class are joined: ``HyenaPixel 3-3-9-3``,
    ``SepConv 3-3, Attention 9-3``."""
    groups: list[tuple[str, list[str]]] = []
    for stage in stages:
        cls, _, count = stage.rpartition(" ×")
        if " + " in stage:
            groups.append((stage, []))
        elif groups and groups[-1][0] == cls and groups[-1][1]:
            groups[-1][1].append(count)
        else:
            groups.append((cls, [count]))
    return ", ".join(f"{cls} {'-'.join(counts)}".strip() for cls, counts in groups) or "-"


def _weights_status(row: dict) -> str:
    if row.get("bundled"):
        return "bundled"
    if not row["published"]:
        return "none"
    return "cached" if row["cached"] else "on hub"


def _params(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.0f}k"


def _table(rows: list[dict]) -> Table:
    table = Table(
        title="Registered models (use with --model NAME[=WEIGHTS])",
        caption="published weights: cached = in the local Hugging Face cache; on hub = "
        "downloaded on first use; bundled = trained probe weights shipped in the package; "
        "none = random init only. (timm) = timm's own model.",
    )
    table.add_column("name [dim](aliases)[/dim]", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("token mixer: blocks per stage")
    table.add_column("weights", no_wrap=True)
    for row in rows:
        name = row["name"] + (" (timm)" if row["family"] == "timm" else "")
        if row["aliases"]:
            name += f"\n[dim]({', '.join(row['aliases'])})[/dim]"
        table.add_row(name, _params(row["params"]), _compact_mixers(row["mixers"]), _weights_status(row))
    return table


def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """List every registered HyenaPixel-family model and alias: parameters, token mixer per
    stage, and whether published weights exist and are in the local Hugging Face cache."""
    rows = model_rows()
    if as_json:
        typer.echo(json.dumps({"models": rows, "aliases": dict(ALIASES)}, indent=1))
        return
    stdout_console.print(_table(rows))
