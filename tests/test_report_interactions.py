"""The report's interaction section: its settings, files, border table and text."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hpx_analysis.interactions import InteractionResult
from hpx_analysis.report.interactions_section import (
    INTERACTION_SECTION_FILES,
    InteractionSectionSettings,
    interaction_section_settings,
    interactions_markdown,
    run_interaction_section,
)
from hpx_analysis.report.settings import FULL, QUICK
from hpx_analysis.settings import RunContext


def test_settings_come_from_the_report_presets():
    assert interaction_section_settings(QUICK) == InteractionSectionSettings(224, 1, 32)
    assert interaction_section_settings(FULL) == InteractionSectionSettings(224, 10, 256)
    assert InteractionSectionSettings(size=64).maps() == ("centre", "edge", "corner", "16:16", "16:48", "48:32")


def test_section_files_border_table_and_conv_reach(tmp_path):
    settings = InteractionSectionSettings(size=64, queries_sampled=8)
    result = run_interaction_section(
        ["hpx_s4=random", "conv_s4=random"], None, settings, RunContext(out_dir=tmp_path, seed=0)
    )
    for name in (*INTERACTION_SECTION_FILES[:2], "interactions.csv", "interactions_border.csv"):
        assert (tmp_path / name).is_file(), name
    border = pd.read_csv(tmp_path / "interactions_border.csv")
    loaded = InteractionResult.load(tmp_path, "hpx_former_s4")
    for b in loaded.blocks:  # the border mean written out by hand from the saved queries
        h, w = b.grid
        ring = [d for t, d in zip(b.sample, b.query_distance_px) if t // w in (0, h - 1) or t % w in (0, w - 1)]
        inner = [d for t, d in zip(b.sample, b.query_distance_px) if not (t // w in (0, h - 1) or t % w in (0, w - 1))]
        row = border[(border.model == "hpx_former_s4") & (border.block == float(b.name))].iloc[0]
        assert row.border_queries == len(ring) and row.inner_queries == len(inner)
        for value, hand in ((row.border_px, ring), (row.inner_px, inner)):  # NaN when none was sampled
            assert (math.isnan(value) and not hand) or np.isclose(value, np.mean(hand))
    # ConvFormer-S4's first block mixes a 7x7 window at stride 4: no pair is further than 3 * sqrt(2) * 4 px
    conv = result.to_frame().query("model == 'convformer_s4' and stage == 0").mean_distance_px.iloc[0]
    assert 0 < conv <= 3 * math.sqrt(2) * 4
    how, tables = interactions_markdown(result)
    assert "random init (seed 0)" in how and "| convformer_s4 |" in tables and "border_px" in tables
