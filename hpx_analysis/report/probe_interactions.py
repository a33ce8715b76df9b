"""The probe section's interaction part: the mean interaction distance of each probe model's
block at random init, at each bundled training snapshot and trained, and where the trained
readout unit puts its interaction mass (the square's share against chance, per distance bin).

Writes ``probe_interactions.csv`` (distances), ``probe_readout_share.csv`` (shares) and
``probe_interactions.png`` into the section's folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "ProbeInteractions",
    "probe_interactions",
    "write_probe_interactions",
    "probe_interactions_markdown",
    "PROBE_INTERACTION_FILES",
]

PROBE_INTERACTION_FILES = ["probe_interactions.png"]
DISTANCE_FILE, SHARE_FILE = "probe_interactions.csv", "probe_readout_share.csv"
DISTANCE_COLUMNS = ["mean_distance_px", "std_distance_px", "images"]
RANDOM_STEP = 0  # where the random init sits on the step axis


@dataclass
class ProbeInteractions:
    """``distances``: model, weights, step (0: random init), stage, block, mixer,
    mean_distance_px, std_distance_px, images; ``shares``: model, weights, bin, images,
    share, chance, ratio (the trained readout unit's mass on the square)."""

    distances: pd.DataFrame
    shares: pd.DataFrame


def _spread(n: int, total: int) -> np.ndarray:
    """``n`` indices spread evenly over ``range(total)`` (the test split is ordered by distance)."""
    return np.unique(np.linspace(0, total - 1, max(1, min(n, total))).round().astype(int))


def _probe_specs(name: str) -> list[tuple[int, str]]:
    from ..probe.bundled import snapshot_paths

    return [(RANDOM_STEP, f"{name}=random")] + [(s, f"{name}=bundled:{s}") for s in snapshot_paths(name)]


def _distance_rows(names, images, run) -> pd.DataFrame:
    from ..interactions import interaction_maps
    from ..jobs import loaded_models

    frames = []
    for name in names:
        steps = _probe_specs(name)
        for (step, _), loaded in zip(steps, loaded_models([s for _, s in steps], run)):
            res = interaction_maps(loaded.model, images, size=images[0].shape[-1], queries_sampled=0, name=name)
            frames.append(res.to_frame().assign(weights=loaded.weights, step=step))
    table = pd.concat(frames, ignore_index=True)
    return table[["model", "weights", "step", "stage", "block", "mixer", *DISTANCE_COLUMNS]]


def probe_interactions(loaded, num_images: int, readout_images: int, run, hooks=None) -> ProbeInteractions:
    """Distances over training and the trained readout unit's mass share on the square.

    Args:
        loaded: the trained probe models (:class:`~hpx_analysis.io.weights.LoadedModel`).
        num_images: probe test images (spread over the distances) the distances average over.
        readout_images: probe test images (spread over the distances) for the mass shares.
        run: device and seed (random init and snapshots are loaded with them).
        hooks: ``task`` per part.

    Returns:
        ProbeInteractions: the two tables.
    """
    from ..interactions.probe import mass_share_by_bin, readout_mass_shares
    from ..probe.evaluate import distance_bins, fixed_test_split
    from ..probe.task import ProbeBatch, ProbeTask

    task = ProbeTask()
    test = fixed_test_split(task, reps=1)  # every distance x class once, ordered by distance
    if hooks is not None:
        hooks.task("probe interactions")
    images = list(test.images[_spread(num_images, len(test))])
    distances = _distance_rows([m.name for m in loaded], images, run)
    pick = _spread(readout_images, len(test))
    batch = ProbeBatch(test.images[pick], test.labels[pick], test.distances[pick], test.centres[pick])
    frames = []
    for m in loaded:
        shares = readout_mass_shares(m.model, batch, task.square)
        frames.append(mass_share_by_bin(shares, distance_bins(task)).assign(model=m.name, weights=m.weights))
    shares = pd.concat(frames, ignore_index=True)
    return ProbeInteractions(distances, shares[["model", "weights", "bin", "images", "share", "chance", "ratio"]])


def write_probe_interactions(result: ProbeInteractions, out_dir: str | Path) -> list[Path]:
    """Write the two tables and the figure into ``out_dir`` (atomically).

    Args:
        result: the probe interactions.
        out_dir: the section's folder.

    Returns:
        list[Path]: the files written.
    """
    import matplotlib.pyplot as plt

    from ..io.output import atomic_write
    from ..plotting.probe_interactions import plot_probe_interactions

    out = Path(out_dir)
    paths = [
        atomic_write(out / DISTANCE_FILE, lambda fh: fh.write(result.distances.to_csv(index=False).encode())),
        atomic_write(out / SHARE_FILE, lambda fh: fh.write(result.shares.to_csv(index=False).encode())),
    ]
    fig = plot_probe_interactions(result.distances, result.shares)
    try:
        paths.append(atomic_write(out / PROBE_INTERACTION_FILES[0], lambda fh: fig.savefig(fh, format="png", dpi=120)))
    finally:
        plt.close(fig)
    return paths


def probe_interactions_markdown(result: ProbeInteractions) -> str:
    """The interaction part of the probe section in ``report.md``.

    Args:
        result: the probe interactions.

    Returns:
        str: an explanation and two markdown tables.
    """
    from .markdown import markdown_table

    dist = result.distances.pivot_table(index="model", columns="step", values="mean_distance_px", sort=False)
    dist.columns = ["random init" if c == RANDOM_STEP else f"step {c}" for c in dist.columns]
    share = result.shares.assign(share=100 * result.shares.share, chance=100 * result.shares.chance)
    share = share.pivot_table(index="model", columns="bin", values="ratio", sort=False)
    share.columns = [f"d {c} px" for c in share.columns]
    images = int(result.distances.images.iloc[0])
    chance = 100 * float(result.shares.chance.mean())
    return (
        f"Mean interaction distance (px) of each probe's block over {images} probe test images, all query tokens: "
        "seeded random init (seed of the run, not the training's init), the bundled snapshots and the final "
        "weights (the last step):\n\n"
        + markdown_table(dist.round(2).reset_index())
        + "\n\nThe trained readout unit's interaction map (its block's map for the centre token, each token's mass "
        "spread over its 4x4 px cell): share of its mass on the square's pixels over the share a uniform map gets "
        f"({chance:.2f} %, the square's area over the image's), per distance bin "
        f"({int(result.shares.images.sum() / result.shares.model.nunique())} test images spread over the "
        "distances; 1 = chance, 0 = no mass on the square):\n\n" + markdown_table(share.round(2).reset_index())
    )
