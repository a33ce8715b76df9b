"""The report's two-stage probe section: which stage carries the far square.

The four two-stage probes (128 px task) with their bundled trained weights: accuracy against
distance with 95 % Wilson intervals and the measured reach, the per-stage truncation of the
far quarter of distances (a panel per model, a line per stage, the known answers
:data:`~hpx_analysis.probe.analysis.FAR_STAGE` marked), the per-stage ERFs on 128 px probe
images, and the measured statement for ``hpx_probe_s2``.

The full test split (96 images per distance) takes minutes at 128 px, so the accuracy and
truncation tables are the bundled records (``probes.json``, measured on the full split when
the weights were bundled); the section recomputes the first block of the split (4 images
per distance) and shows it next to the recorded counts. Weights other than the bundled
ones get the recomputed block's numbers instead (and the text says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch

from ..settings import Hooks, RunContext, Settings

__all__ = [
    "S2_PROBES",
    "PROBE_S2_FIGURE_FILES",
    "ProbeS2SectionSettings",
    "ProbeS2SectionResult",
    "run_probe_s2_section",
    "probe_s2_markdown",
    "recorded_tables",
    "carrying_stage",
]

S2_PROBES = ("hpx_probe_s2", "conv_probe_s2", "c_hpx_probe_s2", "hpx_c_probe_s2")
PROBE_S2_FIGURE_FILES = ["probe_s2_eval.png", "probe_s2_truncation.png", "erf.png"]


@dataclass(frozen=True)
class ProbeS2SectionSettings(Settings):
    """The two-stage probe section's settings (the same in the quick and the full report).

    Args:
        erf_num_images: 128 px probe test images the per-stage ERFs average over.
    """

    erf_num_images: int = 4


@dataclass
class ProbeS2SectionResult:
    """The section's numbers: accuracy per distance (``eval_table``, Wilson columns), measured
    reach per model, far-quarter accuracy per stage and relative size (``far``; stage -1 is
    the untruncated model), the recomputed block against the record (``check``), the
    per-stage ERFs, the weights per model and whether the tables are the bundled records."""

    eval_table: pd.DataFrame
    reach: dict
    far: pd.DataFrame
    check: pd.DataFrame
    erf: object
    weights: dict
    from_records: dict  # model -> True where its tables are the bundled record

    def to_frame(self) -> pd.DataFrame:
        """The accuracy-against-distance table."""
        return self.eval_table


def recorded_tables(name: str, weights: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A bundled probe's full-split numbers from its record: accuracy per distance and the
    far-quarter accuracy per truncated stage and relative size, with Wilson intervals.

    Args:
        name: the probe model.
        weights: the weights description for the table's ``weights`` column.

    Returns:
        The per-distance table (``EVAL_COLUMNS``) and the far-quarter table (model, stage,
        rel_size, accuracy, correct, n, ci_low, ci_high; stage -1 untruncated).
    """
    from ..probe.bundled import bundled_record
    from ..probe.evaluate import EVAL_COLUMNS
    from ..probe.intervals import wilson_interval

    record = bundled_record(name)
    n = record["test_images_per_distance"]
    dist = pd.DataFrame(sorted(record["distance_accuracy"].items(), key=lambda kv: int(kv[0])), columns=["d", "a"])
    correct = (dist.a * n).round()
    low, high = wilson_interval(correct.to_numpy(), n)
    table = pd.DataFrame({"model": name, "distance_px": dist.d.astype(int), "accuracy": correct / n, "n": n}).assign(
        ci_low=low, ci_high=high, weights=weights
    )[EVAL_COLUMNS]
    far_cols = ("accuracy", "correct", "n", "ci_low", "ci_high")
    rows = [{"model": name, "stage": -1, "rel_size": math.nan, **{k: record["far_quarter"][k] for k in far_cols}}]
    for stage, sizes in record.get("truncation", {}).get("stages", {}).items():
        for rel, far in sizes.items():
            rows.append({"model": name, "stage": int(stage), "rel_size": float(rel), **{k: far[k] for k in far_cols}})
    return table, pd.DataFrame(rows)


def _first_block(loaded) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same two tables recomputed on the first block of the test split."""
    from ..models import long_conv_mixers
    from ..probe.evaluate import (
        RECORD_REL_SIZES,
        SMALL_REPS,
        accuracy_by_distance,
        accuracy_truncated,
        distance_bins,
        iter_test_split,
        pooled_accuracy,
    )
    from ..probe.task import ProbeBatch, probe_task_for

    model, task = loaded.model, probe_task_for(loaded.model)
    table = accuracy_by_distance(
        model, iter_test_split(task, reps=SMALL_REPS), name=loaded.name, weights=loaded.weights
    )
    far = distance_bins(task)[-1]
    far_block = ProbeBatch.concat(list(iter_test_split(task, reps=SMALL_REPS, d_range=far)))
    rows = [{"model": loaded.name, "stage": -1, "rel_size": math.nan, **pooled_accuracy(table, *far)}]
    with torch.no_grad():
        for stage in sorted({s for s, _, _ in long_conv_mixers(model)}):
            for rel in RECORD_REL_SIZES:
                t = accuracy_truncated(model, far_block, (stage, rel))
                rows.append({"model": loaded.name, "stage": stage, "rel_size": float(rel), **pooled_accuracy(t, *far)})
    return table, pd.DataFrame(rows)


def _check_rows(name: str, block: pd.DataFrame, block_far: pd.DataFrame) -> list[dict]:
    """The recomputed first block against the counts recorded for it."""
    from ..probe.bundled import bundled_record

    record = bundled_record(name)
    correct = int((block.accuracy * block.n).round().sum())
    rows = [dict(model=name, quantity="correct, all distances", recorded=record["small_test_correct"])]
    rows[0].update(recomputed=correct, n=int(block.n.sum()))
    smallest = block_far[block_far.stage >= 0].groupby("stage").rel_size.min()
    for stage, rel in smallest.items():
        far = block_far[(block_far.stage == stage) & (block_far.rel_size == rel)].iloc[0]
        recorded = record["truncation"]["small_far_correct"][str(stage)]
        rows.append(
            dict(model=name, quantity=f"correct, far quarter, stage {stage} at {rel:g}", recorded=recorded)
            | dict(recomputed=int(far.correct), n=int(far.n))
        )
    return rows


def run_probe_s2_section(
    specs: list[str],
    images=None,
    settings: ProbeS2SectionSettings | None = None,
    run: RunContext | None = None,
    hooks: Hooks | None = None,
) -> ProbeS2SectionResult:
    """The two-stage probe section, written into ``run.out_dir``: ``probe_s2_eval.csv``,
    ``probe_s2_far.csv``, ``probe_s2_check.csv``, the two figures and the per-stage ERFs.

    Args:
        specs: the two-stage probes' specs.
        images: not used (the probe test split is the section's images).
        settings: the section's settings (default :class:`ProbeS2SectionSettings`).
        run: device, seed, command and output folder.
        hooks: passed to the ERF job.

    Returns:
        ProbeS2SectionResult: the section's numbers.
    """
    from ..erf.job import erf_job
    from ..erf.settings import ErfSettings, map_grid
    from ..erf.unit import ErfUnit
    from ..jobs import loaded_models
    from ..probe.analysis import PROBE_IMAGES_LABEL, ProbeImages
    from ..probe.intervals import measured_reach, reach_level

    settings, run, hooks = settings or ProbeS2SectionSettings(), run or RunContext(), hooks or Hooks()
    loaded = list(loaded_models(specs, run))
    evals, fars, checks, reach, weights, from_records = [], [], [], {}, {}, {}
    for m in loaded:
        block, block_far = _first_block(m)
        from_records[m.name] = m.weights_kind == "bundled"
        if from_records[m.name]:
            table, far = recorded_tables(m.name, m.weights)
            checks += _check_rows(m.name, block, block_far)
        else:
            table, far = block, block_far
        evals.append(table)
        fars.append(far)
        reach[m.name], weights[m.name] = measured_reach(table, reach_level(4)), m.weights
    units = [ErfUnit(stage=0), ErfUnit(stage=1)]
    maps = map_grid(ErfSettings(images=PROBE_IMAGES_LABEL), [None], units)
    erf = erf_job(loaded, ProbeImages(settings.erf_num_images), maps, run, hooks)
    result = ProbeS2SectionResult(
        pd.concat(evals, ignore_index=True), reach, pd.concat(fars, ignore_index=True),
        pd.DataFrame(checks, columns=["model", "quantity", "recorded", "recomputed", "n"]), erf, weights,
        from_records,
    )  # fmt: skip
    if run.out_dir is not None and run.is_main:
        _write(result, run.out_dir)
    return result


def _write(result: ProbeS2SectionResult, out_dir) -> None:
    import matplotlib.pyplot as plt

    from ..plotting.probe_stages import plot_accuracy_with_reach, plot_stage_truncation

    out_dir.mkdir(parents=True, exist_ok=True)
    result.eval_table.to_csv(out_dir / "probe_s2_eval.csv", index=False)
    result.far.to_csv(out_dir / "probe_s2_far.csv", index=False)
    result.check.to_csv(out_dir / "probe_s2_check.csv", index=False)
    fig = plot_accuracy_with_reach(result.eval_table, result.reach)
    fig.savefig(out_dir / "probe_s2_eval.png", dpi=120)
    plt.close(fig)
    fig = plot_stage_truncation(result.far, result.weights)
    fig.savefig(out_dir / "probe_s2_truncation.png", dpi=120)
    plt.close(fig)


def carrying_stage(far: pd.DataFrame, model: str, chance: float = 0.25) -> str:
    """The measured statement of which stage carries the far square: per stage, the
    far-quarter accuracy at the smallest relative size against the untruncated one.

    Args:
        far: the far-quarter table (:func:`recorded_tables`' second table).
        model: the model.
        chance: the chance level.

    Returns:
        One sentence, generated from the numbers.
    """
    sub = far[far.model == model]
    base = sub[sub.stage == -1].iloc[0]
    parts, carrying = [], []
    for stage, g in sub[sub.stage >= 0].groupby("stage"):
        row = g.loc[g.rel_size.idxmin()]
        parts.append(
            f"truncating stage {stage} to {row.rel_size:g} leaves {100 * row.accuracy:.1f} % "
            f"[{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}]"
        )
        if row.ci_high < base.ci_low and row.accuracy <= chance + 0.15:
            carrying.append(str(stage))
    verdict = (
        f"so stage {' and '.join(carrying)} carries the far square (its truncation drops the far quarter "
        "to within 15 points of chance; the other's costs less)"
        if len(carrying) == 1
        else f"so no single stage carries it alone ({len(carrying)} stages drop to near chance)"
    )
    return (
        f"`{model}` keeps {100 * base.accuracy:.1f} % [{100 * base.ci_low:.1f}, {100 * base.ci_high:.1f}] in "
        f"the far quarter untruncated; " + "; ".join(parts) + f"; {verdict}."
    )


def probe_s2_markdown(result: ProbeS2SectionResult) -> tuple[str, str]:
    """The section's text in ``report.md``.

    Args:
        result: the section's result.

    Returns:
        tuple[str, str]: how it was made, and its tables and measured statement.
    """
    from ..probe.analysis import FAR_STAGE
    from .markdown import markdown_table

    weights = "; ".join(f"`{m}`: {w}" for m, w in result.weights.items())
    recorded = [m for m, r in result.from_records.items() if r]
    source = (
        f"Accuracy and truncation of {', '.join(f'`{m}`' for m in recorded)} are the bundled records "
        "(full test split, 96 images per distance, measured when the weights were bundled); the first block "
        "of the split (4 images per distance) is recomputed here and agrees as the last table shows."
        if recorded
        else ""
    )
    others = [m for m, r in result.from_records.items() if not r]
    if others:
        source += f" {', '.join(f'`{m}`' for m in others)}: not the bundled weights, numbers from the first block only."
    level = 100 * next(iter(result.reach.values()))["level"]
    how = (
        f"**Weights**: {weights}. Two-stage probes on the 128 px task (square up to 60 px from the readout "
        f"centre). {source} Intervals are 95 % Wilson; measured reach: the largest d up to which accuracy "
        f"(its interval's bounds for the reach's interval) stays above {level:.1f} %. "
        "Truncation figure: far-quarter accuracy per truncated stage against the relative window size, "
        f"chance dotted, the known answers marked ({', '.join(f'`{m}`: stage {s}' for m, s in FAR_STAGE.items())} "
        f"drops to chance). ERFs per stage over {result.erf.results[0].num_images if result.erf.results else 0} "
        "probe images."
    )
    reach = pd.DataFrame(
        [{"model": m, **{k: r[k] for k in ("reach_px", "reach_low_px", "reach_high_px", "saturated")}}
         for m, r in result.reach.items()]
    )  # fmt: skip
    far = result.far.assign(**{c: (100 * result.far[c]).round(1) for c in ("accuracy", "ci_low", "ci_high")})
    statement = carrying_stage(result.far, "hpx_probe_s2") if "hpx_probe_s2" in result.weights else ""
    tables = (
        f"**Measured**: {statement}\n\nMeasured reach (px):\n\n{markdown_table(reach)}\n\n"
        f"Far-quarter accuracy (%) per truncated stage (stage -1: untruncated):\n\n{markdown_table(far)}"
    )
    if not result.check.empty:
        tables += f"\n\nRecomputed first block against the record:\n\n{markdown_table(result.check)}"
    return how, tables
