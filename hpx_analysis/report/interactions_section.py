"""The report's interaction section on the published architectures: H_b maps at several query
points, H_px maps of a centre, an edge and a corner query, the mean distance of border
query tokens against inner ones, and the distance per block of HpxFormer-S4 against
ConvFormer-S4 (one block per stage, the paper's depth comparison).

The job is :func:`~hpx_analysis.interactions.run_interactions` (its files) plus
``interactions_border.csv`` and the section's figures ``interactions_depth.png``,
``interactions_hpx_maps.png`` and ``interactions_hb_maps.png``, each model labelled with
its weights (a random init in CI; the section is meant for published weights).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ..settings import Hooks, RunContext, Settings

__all__ = [
    "InteractionSectionSettings",
    "InteractionSectionResult",
    "run_interaction_section",
    "interaction_section_settings",
    "interactions_markdown",
    "border_table",
    "INTERACTION_SECTION_FILES",
]

INTERACTION_SECTION_FILES = ["interactions_depth.png", "interactions_hpx_maps.png", "interactions_hb_maps.png"]
BORDER_FILE = "interactions_border.csv"
HPX_QUERIES = ("centre", "edge", "corner")


@dataclass(frozen=True)
class InteractionSectionSettings(Settings):
    """The section's settings.

    Args:
        size: input side in px.
        num_images: images the distances and maps average over.
        queries_sampled: sampled query tokens per block for the distances (0: all).
    """

    size: int = 224
    num_images: int = 1
    queries_sampled: int = 32

    def maps(self) -> tuple[str, ...]:
        """The map queries: centre, edge, corner and three input pixels (H_b's extra points)."""
        q, h = self.size // 4, self.size // 2
        return (*HPX_QUERIES, f"{q}:{q}", f"{q}:{3 * q}", f"{3 * q}:{h}")


def interaction_section_settings(report) -> InteractionSectionSettings:
    """The section's settings from the report's.

    Args:
        report: a :class:`~hpx_analysis.report.settings.ReportSettings`.

    Returns:
        InteractionSectionSettings: size, images and sampled queries of the report.
    """
    return InteractionSectionSettings(
        size=report.interactions_size,
        num_images=report.interactions_num_images,
        queries_sampled=report.interactions_queries,
    )


@dataclass
class InteractionSectionResult:
    """Every model's :class:`~hpx_analysis.interactions.InteractionResult`, the border table
    and the settings used."""

    results: list
    border: pd.DataFrame
    settings: InteractionSectionSettings

    def to_frame(self) -> pd.DataFrame:
        """The distance per block of every model."""
        from ..interactions import interactions_frame

        return interactions_frame(self.results)


def border_table(results) -> pd.DataFrame:
    """Per model and block: mean distance of the sampled border query tokens and inner ones.

    Args:
        results: :class:`~hpx_analysis.interactions.InteractionResult` objects.

    Returns:
        pandas.DataFrame: model, weights, block, mixer, border_px, inner_px, border_queries,
        inner_queries.
    """
    from ..interactions.probe import border_inner_distance

    rows = [
        {"model": r.model, "weights": r.weights, "block": b.name, "mixer": b.mixer, **border_inner_distance(b)}
        for r in results
        for b in r.blocks
    ]
    return pd.DataFrame(rows)


def _tagged(result, queries=None):
    """A copy labelled ``label [weights tag]``, its maps cut to ``queries`` (all when None)."""
    from ..plotting.labels import weights_tag

    blocks = result.blocks
    if queries is not None:
        blocks = [
            replace(
                b,
                maps={q: b.maps[q] for q in queries if q in b.maps},
                first_maps={q: b.first_maps[q] for q in queries if q in b.first_maps},
            )
            for b in blocks
        ]
    return replace(result, label=f"{result.label} [{weights_tag(result.weights)}]", blocks=blocks)


def _write_figures(results, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from ..interactions.job import _save_figure
    from ..plotting.interactions import plot_interaction_distance, plot_interaction_maps

    by_mixer = {r.blocks[0].mixer: r for r in results if r.blocks}
    paths = []
    _, ax = plt.subplots(figsize=(7, 3.5))
    plot_interaction_distance([_tagged(r) for r in results], ax)
    paths.append(_save_figure(ax.figure, out / INTERACTION_SECTION_FILES[0], dpi=150))
    for name, mixer, queries in (
        (INTERACTION_SECTION_FILES[1], "HyenaPixel", HPX_QUERIES),
        (INTERACTION_SECTION_FILES[2], "BidirectionalHyena", None),
    ):
        if mixer in by_mixer:
            fig = plot_interaction_maps([_tagged(by_mixer[mixer], queries)])
            paths.append(_save_figure(fig, out / name, dpi=110))
    return paths


def run_interaction_section(
    specs: list[str],
    images: Path | None = None,
    settings: InteractionSectionSettings | None = None,
    run: RunContext | None = None,
    hooks: Hooks | None = None,
) -> InteractionSectionResult:
    """The interaction analysis of the section's models and the section's files.

    Args:
        specs: the models' specs.
        images: an image folder (None: the bundled photographs).
        settings: the section's settings (default :class:`InteractionSectionSettings`).
        run: device, seed, command and output folder.
        hooks: passed to the job.

    Returns:
        InteractionSectionResult: the results and the border table.
    """
    from ..interactions import InteractionSettings, run_interactions
    from ..io.images import list_images
    from ..io.output import atomic_write

    settings, run = settings or InteractionSectionSettings(), run or RunContext()
    analysis = InteractionSettings(size=settings.size, maps=settings.maps(), queries_sampled=settings.queries_sampled)
    results = run_interactions(specs, list_images(images, settings.num_images), analysis, run, hooks)
    border = border_table(results)
    if run.out_dir is not None and run.is_main:
        out = Path(run.out_dir)
        atomic_write(out / BORDER_FILE, lambda fh: fh.write(border.to_csv(index=False).encode()))
        _write_figures(results, out)
    return InteractionSectionResult(results, border, settings)


def interactions_markdown(result: InteractionSectionResult) -> tuple[str, str]:
    """The section's text in ``report.md``.

    Args:
        result: the section's result.

    Returns:
        tuple[str, str]: how it was made, and its markdown tables.
    """
    from .markdown import markdown_table

    s = result.settings
    frame = result.to_frame()
    weights = "; ".join(f"`{r.model}`: {r.weights}" for r in result.results)
    dist = frame.assign(block=frame.stage.astype(str) + "." + frame.block.astype(str))
    dist = dist.pivot_table(index="model", columns="block", values="mean_distance_px", sort=False).round(2)
    border = result.border.copy()
    for col in ("border_px", "inner_px"):
        border[col] = border[col].round(2)
    how = (
        f"**Weights**: {weights}. The section is meant for published weights; with a random init the "
        "numbers describe the architecture only. Interaction map r(i, j) = ||c(i, j)||, the norm of what the "
        "token mixer carries from token j to token i (gates fixed by the input); mean interaction distance "
        "= sum r(i, j) ||p(i) - p(j)|| / sum r(i, j) in input pixels. "
        f"{len(result.results[0].images) if result.results else 0} image(s) at {s.size} px, "
        f"{s.queries_sampled} sampled query tokens per block (all on grids with fewer tokens); maps of the "
        f"queries {', '.join(s.maps())} (named ones on each block's grid, ROW:COL in input pixels). "
        "Border tokens: the outer ring of each block's grid, among the sampled queries."
    )
    table = (
        "Mean interaction distance (px) per block (STAGE.BLOCK):\n\n"
        + markdown_table(dist.reset_index())
        + "\n\nSampled border query tokens against inner ones (px; NaN: none sampled):\n\n"
        + markdown_table(border.drop(columns="weights"))
    )
    return how, table
