"""The two-stage probes in the analyses: probe images at each model's own size (ERF,
interactions), the per-stage truncation figure and the report's two-stage section."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import timm
from typer.testing import CliRunner

from hpx_analysis.cli.main import app
from hpx_analysis.plotting.probe_stages import plot_stage_truncation
from hpx_analysis.probe.analysis import ProbeImages, images_for_model
from hpx_analysis.probe.bundled import bundled_record
from hpx_analysis.probe.intervals import wilson_interval
from hpx_analysis.report.probe_s2_section import S2_PROBES, ProbeS2SectionSettings, carrying_stage, recorded_tables


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_probe_images_come_at_each_models_size():
    source = ProbeImages(3)
    for name, size in (("hpx_probe_s2", 128), ("c_hpx_probe_s2", 128), ("hpx_probe", 64), ("conv_probe", 64)):
        model = timm.create_model(name)
        items, got = images_for_model(source, model, 224)
        assert got == size and len(items) == 3 and all(t.shape == (3, size, size) for t in items)
    files = ["a.png"]
    assert images_for_model(files, model, 224) == (files, 224)  # other inputs stay as given


def test_erf_per_stage_on_128px_probe_images(tmp_path):
    r = invoke(
        "erf", "-m", "c_hpx_probe_s2", "--images", "probe", "--stage", "0,1", "--num-images", "2",
        "--device", "cpu", "--out", tmp_path,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    for stage in (0, 1):
        record = json.loads((tmp_path / f"erf_c_hpx_probe_s2_s{stage}.json").read_text())
        assert record["size"] == 128 and record["input_size"] == [128, 128] and record["unit"] == {"stage": stage}
        assert record["weights_kind"] == "bundled" and record["num_images"] == 2
        assert np.load(tmp_path / f"erf_c_hpx_probe_s2_s{stage}.npy").shape == (128, 128)


def test_interactions_on_128px_probe_images(tmp_path):
    r = invoke(
        "interactions", "-m", "hpx_c_probe_s2", "--images", "probe", "--num-images", "1", "--queries-sampled", "8",
        "--maps", "centre", "--device", "cpu", "--out", tmp_path,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "interactions.json").read_text())
    assert record["settings"]["size"] == 128 and record["models"][0]["size"] == [128, 128]


def _far_table() -> pd.DataFrame:
    """A hand-made far-quarter table: hpx_c drops to chance when stage 0 is cut, conv has no stage."""
    rows = [
        ("hpx_c_probe_s2", -1, float("nan"), 0.98),
        ("hpx_c_probe_s2", 0, 0.125, 0.26),
        ("hpx_c_probe_s2", 0, 1.0, 0.93),
        ("conv_probe_s2", -1, float("nan"), 0.25),
    ]
    t = pd.DataFrame(rows, columns=["model", "stage", "rel_size", "accuracy"])
    return t.assign(ci_low=t.accuracy - 0.02, ci_high=t.accuracy + 0.02)


def test_stage_truncation_figure_draws_a_line_per_stage_and_the_known_answer():
    fig = plot_stage_truncation(_far_table(), {"hpx_c_probe_s2": "bundled (x.safetensors)"})
    hpx_c, conv = fig.axes
    stage_lines = [ln for ln in hpx_c.lines if ln.get_label() == "stage 0 truncated"]
    assert len(stage_lines) == 1 and list(stage_lines[0].get_ydata()) == [26.0, 93.0]
    (star,) = [ln for ln in hpx_c.lines if ln.get_label().startswith("known: stage 0")]
    assert star.get_marker() == "*" and list(star.get_xydata()[0]) == [0.125, 25.0]
    assert [ln.get_ydata()[0] for ln in hpx_c.lines if ln.get_label() == "chance"] == [25.0]
    assert [ln.get_ydata()[0] for ln in hpx_c.lines if ln.get_label() == "untruncated"] == [98.0]
    assert not [ln for ln in conv.lines if "truncated" in ln.get_label() and "un" not in ln.get_label()]
    assert not [ln for ln in conv.lines if ln.get_label().startswith("known")]  # no known answer for conv
    assert "[bundled]" in hpx_c.get_title()


def test_carrying_stage_is_read_from_the_numbers():
    text = carrying_stage(_far_table(), "hpx_c_probe_s2")
    assert "so stage 0 carries the far square" in text and "26.0 % [24.0, 28.0]" in text
    flat = _far_table().assign(accuracy=0.97, ci_low=0.95, ci_high=0.99)
    assert "no single stage" in carrying_stage(flat, "hpx_c_probe_s2")


def test_recorded_tables_follow_the_record():
    table, far = recorded_tables("hpx_probe_s2", "bundled")
    record = bundled_record("hpx_probe_s2")
    assert set(table.n) == {record["test_images_per_distance"]} == {96}
    low, high = wilson_interval(table.accuracy * 96, 96)
    assert np.allclose(table.ci_low, low) and np.allclose(table.ci_high, high)
    base = far[far.stage == -1].iloc[0]
    assert base.correct == record["far_quarter"]["correct"] and set(far.stage) == {-1, 0, 1}


@pytest.mark.slow
def test_probe_s2_section_entry_renders_in_report_md(tmp_path, monkeypatch):
    from hpx_analysis.report import sections
    from hpx_analysis.report.build import build_report
    from hpx_analysis.report.settings import QUICK

    entry = sections.SECTION_TABLE["probe_s2"]
    assert entry.models == S2_PROBES and entry.own_weights == "auto"
    assert isinstance(entry.settings(QUICK), ProbeS2SectionSettings)
    for name in list(sections.SECTION_TABLE):
        if name != "probe_s2":
            monkeypatch.delitem(sections.SECTION_TABLE, name)
    monkeypatch.setitem(
        sections.SECTION_TABLE, "probe_s2", replace(entry, settings=lambda _r: ProbeS2SectionSettings(1))
    )
    build_report(tmp_path / "r", QUICK, device="cpu", log=lambda msg: None)
    md = (tmp_path / "r" / "report.md").read_text()
    assert "Two-stage probes: which stage carries the far square" in md
    assert "![probe_s2 probe_s2_truncation.png](probe_s2/probe_s2_truncation.png)" in md
    assert "bundled records" in md and "**Measured**: `hpx_probe_s2`" in md
    check = pd.read_csv(tmp_path / "r" / "probe_s2" / "probe_s2_check.csv")
    assert (check.recorded == check.recomputed).all() and len(check) == 8
    record = json.loads((tmp_path / "r" / "probe_s2" / "erf_hpx_probe_s2_s1.json").read_text())
    assert record["size"] == 128 and record["num_images"] == 1


@pytest.mark.slow
def test_truncation_on_128px_probe_images_per_stage(tmp_path):
    args = ["-m", "hpx_c_probe_s2", "--images", "probe", "--num-images", "236", "--rel-sizes", "0.125"]
    assert invoke("truncation", *args, "--out", tmp_path).exit_code == 0
    by_d = pd.read_csv(tmp_path / "truncation_probe.csv")
    assert {"stage", "rel_size", "distance_px", "accuracy", "n", "ci_low", "ci_high"} <= set(by_d.columns)
    assert set(by_d.stage) == {-1, 0} and by_d.distance_px.max() == 60  # the 128 px task (one block)
