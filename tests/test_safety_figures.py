"""Issue 16, item 9: figures carry a short weights tag (the full description, with the failed
download's text, stays in the records), nothing is clipped, coverage lines are told apart by
marker and the legend covers no axis label, and the truncation figure shows the KL divergence."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

import hpx_analysis.plotting.files as files
from hpx_analysis.coverage import model_coverage
from hpx_analysis.io.weights import load_model
from hpx_analysis.kernels import kernel_maps
from hpx_analysis.plotting.erf import erf_panel_title
from hpx_analysis.plotting.labels import weights_tag

OFFLINE = (
    "random init (seed 0; published weights unavailable: Spravil/hpx_former_s18.westai_in1k: hub not "
    "reachable (ConnectError: [Errno -3] Temporary failure in name resolution while fetching the file "
    "https://huggingface.co/Spravil/hpx_former_s18.westai_in1k/resolve/main/model.safetensors))"
)


@pytest.mark.parametrize(
    "weights, tag",
    [
        (OFFLINE, "random init (seed 0)"),
        ("random init (seed 7)", "random init (seed 7)"),
        ("published (Spravil/hpx_former_s18.westai_in1k)", "published"),
        ("file /data/ckpts/run3/hpx_s18_ep300.safetensors", "hpx_s18_ep300.safetensors"),
        ("bundled probe weights (trained 3 epochs)", "bundled"),
        ("", ""),
    ],
)
def test_weights_tag(weights, tag):
    assert weights_tag(weights) == tag


def captured(monkeypatch) -> list:
    """Figures handed to the file writer (still drawable after it closes them)."""
    seen, real = [], files._write

    def write(fig, out_dir, names, dpi):
        seen.append((fig, [out_dir / n for n in names], dpi))
        return real(fig, out_dir, names, dpi)

    monkeypatch.setattr(files, "_write", write)
    return seen


def texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(plt.Text) if t.get_text()]


def renderer(fig):
    """A drawn Agg canvas for ``fig`` (closed figures lose theirs)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def assert_not_clipped(fig, png, dpi):
    """The written image holds every drawn element (its size covers the tight bounding box)."""
    fig.set_dpi(dpi)
    tight = fig.get_tightbbox(renderer(fig))
    width, height = Image.open(png).size
    assert width >= tight.width * dpi - 2 and height >= tight.height * dpi - 2, (width, height, tight)


def test_kernels_title_is_short_and_whole(tmp_path, monkeypatch):
    seen = captured(monkeypatch)
    loaded = load_model("hpx_s4=random")
    result = kernel_maps(loaded.model, name=loaded.name, weights=OFFLINE)
    files.save_kernel_figure(result, tmp_path)
    fig, (png,), dpi = seen[0]
    assert not any("Errno" in t or "huggingface" in t for t in texts(fig))
    assert "hpx_former_s4 [random init (seed 0)]" in fig._suptitle.get_text()
    assert_not_clipped(fig, png, dpi)


def test_coverage_legend_beside_the_axes_and_lines_marked_apart(tmp_path, monkeypatch):
    seen = captured(monkeypatch)
    from hpx_analysis.coverage import CoverageResult

    results = []
    for name in ("hpx_s4", "hb_s4"):
        loaded = load_model(f"{name}=random")
        results.append(model_coverage(loaded.model, name=loaded.name, weights=OFFLINE))
    result = CoverageResult.concat(results)
    files.save_coverage_figure(result, tmp_path)
    fig, (png,), dpi = seen[0]
    ax = fig.axes[0]
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["hpx_former_s4 [random init (seed 0)]", "hb_former_s4 [random init (seed 0)]"]
    r = renderer(fig)
    box, ylabel, axes_box = legend.get_window_extent(r), ax.yaxis.label.get_window_extent(r), ax.bbox
    assert not box.overlaps(ylabel) and box.x0 >= axes_box.x1  # right of the axes
    markers = {line.get_marker() for line in ax.get_lines()} - {None, "None", ""}
    assert len(markers) >= 2  # each model's line has its own marker
    assert_not_clipped(fig, png, dpi)
    assert result.to_frame()["weights"].iloc[0] == OFFLINE  # the full text stays in the data


def test_truncation_figure_shows_kl_beside_agreement(tmp_path, monkeypatch):
    seen = captured(monkeypatch)
    rows = [("hpx_former_s4", -1, 1.0, "agreement", 100.0), ("hpx_former_s4", -1, 1.0, "kl", 0.0)]
    for stage in (0, 1):
        for r in (0.25, 0.5, 1.0):
            rows += [("hpx_former_s4", stage, r, "agreement", 60 + 40 * r), ("hpx_former_s4", stage, r, "kl", 1 - r)]
    frame = pd.DataFrame(rows, columns=["model", "stage", "rel_size", "metric", "value"]).assign(weights=OFFLINE)
    comparison = SimpleNamespace(to_frame=lambda: frame, settings={"shape": "square", "num_images": 4})
    files.save_truncation_figure(comparison, tmp_path)
    fig, (png,), dpi = seen[0]
    ylabels = [ax.get_ylabel() for ax in fig.axes]
    assert any("agreement" in y for y in ylabels) and any("KL" in y for y in ylabels)
    assert not any("Errno" in t for t in texts(fig))
    assert all(len(ax.get_xlabel()) < 60 for ax in fig.axes)
    assert_not_clipped(fig, png, dpi)


def test_erf_panel_title_is_the_model_and_its_tag():
    result = SimpleNamespace(settings={"model": "hpx_former_s18", "weights": OFFLINE}, matrix=np.ones((4, 4)))
    assert erf_panel_title(result) == "hpx_former_s18\nrandom init (seed 0)"
