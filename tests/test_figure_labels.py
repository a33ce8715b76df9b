"""Stages are numbered as the command line and the CSVs number them (0-based: ``stage 0``,
``s0``) in every figure and in report.md; figures of untrained models say so in a short
tag; the probe figures name their lines (not seaborn's columns), keep lines apart and the
legend off the curves."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from hpx_analysis.coverage import model_coverage
from hpx_analysis.erf.result import ErfResult
from hpx_analysis.io.weights import load_model
from hpx_analysis.kernels import kernel_maps
from hpx_analysis.plotting.coverage import plot_coverage
from hpx_analysis.plotting.erf import plot_erf_grid
from hpx_analysis.plotting.kernels import plot_kernels
from hpx_analysis.plotting.labels import short_weights, stage_label, weights_tag
from hpx_analysis.plotting.probe import plot_probe_accuracy
from hpx_analysis.plotting.truncation import plot_truncation
from hpx_analysis.report import markdown

OFFLINE = (
    "random init (seed 0; published weights unavailable: Spravil/hpx_former_s4: hub not reachable "
    "(ConnectError: [Errno -3] Temporary failure in name resolution))"
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(plt.Text) if t.get_text()]


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def truncation_frame(models=("hpx_former_s4",), stages=(0, 2), weights=OFFLINE) -> pd.DataFrame:
    rows = []
    for k, model in enumerate(models):
        rows += [(model, -1, np.nan, "agreement", 100.0), (model, -1, np.nan, "kl", 0.0)]
        for stage in stages:
            for r in (0.25, 0.5, 1.0):
                rows += [(model, stage, r, "agreement", 50 + 50 * r - k), (model, stage, r, "kl", 1 - r + k)]
    frame = pd.DataFrame(rows, columns=["model", "stage", "rel_size", "metric", "value"])
    return frame.assign(weights=weights)


def test_stage_label_counts_like_the_command_line():
    assert [stage_label(s) for s in (0, 1, 3)] == ["stage 0", "stage 1", "stage 3"]
    assert stage_label(2, short=True) == "s2" and stage_label(-1) == "untruncated"


def test_weights_tag_of_a_snapshot_and_a_bare_path():
    assert weights_tag("bundled snapshot (hpx_probe_step50.safetensors, step 50)") == "bundled step 50"
    assert weights_tag("/home/me/runs/ckpt/ep3.safetensors") == "ep3.safetensors"


def test_truncation_legend_names_the_csv_stages():
    frame = truncation_frame(stages=(0, 2))  # as `--stages 0,2` writes them
    fig = plot_truncation(frame)
    labels = legend_texts(fig.axes[0])
    swept = sorted(int(s) for s in frame["stage"].unique() if s >= 0)
    assert labels == ["untruncated", *(f"stage {s}" for s in swept)]
    assert "random init (seed 0)" in fig.axes[0].get_xlabel() and "Errno" not in fig.axes[0].get_xlabel()


def test_truncation_of_two_models_has_a_colour_each_and_no_column_names():
    frame = pd.concat(
        [
            truncation_frame(("hpx_probe",), (0,), "bundled (hpx_probe.safetensors)"),
            truncation_frame(("hb_probe",), (0,), "bundled (hb_probe.safetensors)"),
        ],
        ignore_index=True,
    )
    fig = plot_truncation(frame, metric="kl")
    ax = fig.axes[0]
    labels = legend_texts(ax)
    assert not {"stage_label", "model_label", "S1"} & set(labels)
    assert "hpx_probe [bundled], stage 0" in labels and "hb_probe [bundled], stage 0" in labels
    colours = {line.get_label(): line.get_color() for line in ax.get_lines()}
    assert colours["hpx_probe [bundled], stage 0"] != colours["hb_probe [bundled], stage 0"]
    # each model's untruncated reference in its own colour
    assert colours["hpx_probe [bundled] untruncated"] == colours["hpx_probe [bundled], stage 0"]


def test_kernel_titles_name_the_stages_of_the_table():
    loaded = load_model("hpx_s4=random")
    result = kernel_maps(loaded.model, name=loaded.name)
    fig = plot_kernels(result, weights=OFFLINE)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    stages = result.to_frame()["stage"].tolist()
    assert stages == [0, 1, 2, 3]
    for s in stages:
        assert sum(t.startswith(f"stage {s}, block") for t in titles) == 2  # mean and picked channel
    assert "[random init (seed 0)]" in fig._suptitle.get_text()


def test_coverage_stage_marks_and_a_one_block_axis():
    loaded = load_model("hpx_s4=random")
    frame = model_coverage(loaded.model, name=loaded.name, weights=OFFLINE).to_frame()
    fig = plot_coverage(frame)
    marks = [t for t in texts(fig) if t.startswith("s") and t[1:].isdigit()]
    assert marks == [f"s{s}" for s in sorted(frame["stage"].unique())]
    assert fig.axes[0].get_xlim() == (0.5, len(frame) + 0.5)
    one = plot_coverage(frame[frame["depth"] == 0]).axes[0]  # one block, as the probes have
    assert one.get_xlim() == (0.5, 1.5) and list(one.get_xticks()) == [1]


def erf_result(stage: int, weights: str) -> ErfResult:
    run = {"used": ["a.png"], "skipped": [], "nonfinite_values": 0, "seconds": 0.0, "device": "cpu"}
    matrix = np.outer(np.hanning(9), np.hanning(9))
    how = {"method": "grad", "precision": "fp32", "input_size": matrix.shape}
    return ErfResult(matrix, **run, **how, model="hpx_former_s4", weights=weights, unit={"stage": stage})


def test_erf_grid_names_the_stages_and_tags_random_init():
    fig = plot_erf_grid([erf_result(s, OFFLINE) for s in (0, 1)], column="stage")
    axes = fig.axes[:2]
    assert [ax.get_title() for ax in axes] == ["stage 0", "stage 1"]
    assert "[random init (seed 0)]" in axes[0].get_ylabel() and "Errno" not in axes[0].get_ylabel()


def test_report_tables_name_stages_from_zero():
    loaded = load_model("hpx_s4=random")
    kernels = kernel_maps(loaded.model, name=loaded.name, weights=loaded.weights)
    _, table = markdown.kernels_markdown([kernels])
    assert "| stage 0 |" in table and "| stage 3 |" in table and "S1" not in table
    coverage = model_coverage(loaded.model, name=loaded.name, weights=loaded.weights)
    _, table = markdown.coverage_markdown(coverage)
    assert "stage 0 mean" in table and "S1" not in table
    frame = truncation_frame(stages=(0, 2))
    info = {"labels": False, "no_labels_reason": "no synsets", "num_images": 2, "images": "x", "shape": "square"}
    _, table = markdown.truncation_markdown(SimpleNamespace(to_frame=lambda: frame, settings=info))
    assert "| stage 0 |" in table and "| stage 2 |" in table and "S1" not in table and "S3" not in table


def probe_table() -> pd.DataFrame:
    rows = []
    models = [
        ("hpx_probe", "bundled (hpx_probe.safetensors)"),
        ("hb_probe", "bundled (hb_probe.safetensors)"),
        ("hpx_probe", "file /home/me/runs/probe/hpx_probe_step400.safetensors"),
        ("hpx_s4", OFFLINE),
    ]
    for model, weights in models:
        for d in range(2, 12):
            acc = 1.0 if model != "hpx_s4" else 0.25
            rows.append({"model": model, "distance_px": d, "accuracy": acc, "n": 16, "weights": weights})
    return pd.DataFrame(rows)


def test_probe_eval_legend_beside_the_curves_with_short_tags():
    fig = plot_probe_accuracy(probe_table(), rf_px={"hpx_probe": 9})
    ax = fig.axes[0]
    labels = legend_texts(ax)
    assert labels == [
        "hpx_probe [bundled]",
        "hb_probe [bundled]",
        "hpx_probe [hpx_probe_step400.safetensors]",
        "hpx_s4 [random init (seed 0)]",
        "chance",
    ]
    assert not any("/home" in t or "Errno" in t for t in texts(fig))
    r = FigureCanvasAgg(fig).get_renderer()
    fig.canvas.draw()
    assert ax.get_legend().get_window_extent(r).x0 >= ax.bbox.x1  # right of the axes, over no curve
    curves = [line for line in ax.get_lines() if line.get_label() in labels[:-1]]
    # the three lines at 100 % stay visible: each its own marker and dash, markers nested by size
    assert len({line.get_marker() for line in curves}) == len(curves)
    assert len({line.get_linestyle() for line in curves[:3]}) == 3
    assert curves[0].get_markersize() > curves[1].get_markersize() > curves[2].get_markersize()


def test_short_weights_for_csv_rows():
    frame = pd.DataFrame(
        {"model": ["a", "b", "c"], "weights": [OFFLINE, "file /x/y/run3.pth", None], "value": [1.0, 2.0, 3.0]}
    )
    short = short_weights(frame)
    assert short["weights"].tolist()[:2] == ["random init (seed 0)", "run3.pth"]
    assert pd.isna(short["weights"].iloc[2]) and short["value"].tolist() == [1.0, 2.0, 3.0]
    assert frame["weights"].iloc[0] == OFFLINE  # the caller's table is left as it was
    assert short_weights(frame.drop(columns="weights")).columns.tolist() == ["model", "value"]


def test_labels_import_without_matplotlib():
    code = "import sys, hpx_analysis.plotting.labels; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
