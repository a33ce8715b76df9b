"""Settings objects, jobs and the report's table of sections (truncation, runtime, kernels,
coverage, probe, report)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
import torch

from hpx_analysis import runtime as rt
from hpx_analysis.coverage import CoverageSettings, coverage_job, model_coverage
from hpx_analysis.kernels import KernelSettings, kernel_maps, kernels_job
from hpx_analysis.models.fast import fast_path_record
from hpx_analysis.probe.evaluate import fixed_test_split
from hpx_analysis.probe.jobs import ProbeEvalSettings, probe_eval_job
from hpx_analysis.probe.task import ProbeTask
from hpx_analysis.probe.train import ProbeTrainSettings, TrainConfig
from hpx_analysis.report import QUICK, build_report, sections
from hpx_analysis.settings import Hooks, RunContext, Settings
from hpx_analysis.truncation import TruncationSettings, truncation_job, truncation_sweep

RUNTIME_TINY = dict(mixers=("hpx", "attention"), resolutions=(32,), mode="forward", warmup=0, repeats=1, max_repeats=1)


@pytest.fixture
def hpx_s4(make_s4):
    return make_s4("hpx")


def _tensor_batches(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(2, 3, 64, 64, generator=g), None) for _ in range(2)]


# ----------------------------------------------------------------------------- settings against overrides
def test_truncation_settings_and_overrides_give_the_same_table(hpx_s4):
    settings = TruncationSettings(rel_sizes=(0.3, 1.0), stages=(2, 3), shape="disk")
    a = truncation_sweep(hpx_s4, _tensor_batches(), settings, name="m").table
    b = truncation_sweep(hpx_s4, _tensor_batches(), name="m", rel_sizes=[0.3, 1.0], stages=[2, 3], shape="disk").table
    pd.testing.assert_frame_equal(a, b)
    # an override on top of settings replaces only that field
    c = truncation_sweep(
        hpx_s4, _tensor_batches(), TruncationSettings(shape="disk", stages=(2, 3)), name="m", rel_sizes=(0.3, 1.0)
    ).table
    pd.testing.assert_frame_equal(a, c)
    assert sorted(a.rel_size.dropna().unique()) == [0.3, 1.0] and set(a.stage) == {-1, 2, 3}


def test_kernel_and_coverage_settings_and_overrides_agree(hpx_s4):
    a = kernel_maps(hpx_s4, KernelSettings(block=-1, channel=(1, 2, 3, 4)), name="m")
    b = kernel_maps(hpx_s4, name="m", block=-1, channel=[1, 2, 3, 4])
    assert [s.channel for s in a.stages] == [1, 2, 3, 4] == [s.channel for s in b.stages]
    for sa, sb in zip(a.stages, b.stages):
        assert (sa.block, sa.mean.tolist(), sa.picked.tolist()) == (sb.block, sb.mean.tolist(), sb.picked.tolist())
    c = model_coverage(hpx_s4, CoverageSettings(threshold=0.1, reading="area"), name="m")
    d = model_coverage(hpx_s4, name="m", threshold=0.1, reading="area")
    pd.testing.assert_frame_equal(c.blocks, d.blocks)
    assert (c.threshold, c.reading) == (0.1, "area")


def test_runtime_settings_and_overrides_time_the_same_rows():
    a = rt.measure_mixer_runtime(rt.RuntimeSettings(**RUNTIME_TINY), RunContext(device=torch.device("cpu")))
    b = rt.measure_mixer_runtime(device="cpu", **RUNTIME_TINY)
    cols = ["mixer", "resolution", "feature_size", "mode", "device", "repeats", "status"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert list(a.mixer) == ["hpx", "attention"] and (a["mode"] == "forward").all()


def test_train_config_is_the_probe_train_settings():
    assert TrainConfig is ProbeTrainSettings
    s = ProbeTrainSettings(steps=4, snapshots=[2])
    assert s.snapshots == (2,) and s.describe()["snapshots"] == [2]


# ----------------------------------------------------------------------------- unknown settings
@pytest.mark.parametrize(
    "call, settings",
    [
        (lambda m: truncation_sweep(m, [], rel_size=(0.5,)), TruncationSettings),
        (lambda m: kernel_maps(m, chanel=0), KernelSettings),
        (lambda m: model_coverage(m, diameter="area"), CoverageSettings),
        (lambda m: rt.runtime_sweep(device="cpu", threads=1), rt.RuntimeSettings),
    ],
)
def test_an_unknown_override_names_the_valid_settings(hpx_s4, call, settings):
    with pytest.raises(TypeError, match=f"{settings.__name__} has no setting") as err:
        call(hpx_s4)
    assert all(name in str(err.value) for name in settings.__dataclass_fields__)


def test_bad_settings_fail_when_made():
    with pytest.raises(ValueError, match="positive"):
        TruncationSettings(rel_sizes=(0.0,))
    with pytest.raises(ValueError, match="'square' or 'disk'"):
        TruncationSettings(shape="round")
    with pytest.raises(ValueError, match="unknown mixer"):
        rt.RuntimeSettings(mixers=("conv",))
    with pytest.raises(ValueError, match="diameter reading"):
        CoverageSettings(reading="diagonal")


# ----------------------------------------------------------------------------- records
def test_truncation_record_has_settings_and_fast_paths(tmp_path, bundled_images):
    settings = TruncationSettings(rel_sizes=(0.5,), stages=(3,), size=64, num_images=2, batch_size=2)
    run = RunContext(out_dir=tmp_path, seed=0)
    messages = []
    comparison = truncation_job(["hpx_s4=random", "conv_s18=random"], None, settings, run, Hooks(log=messages.append))
    record = json.loads((tmp_path / "truncation.json").read_text())
    assert set(record) == {"settings", "models", "fast_paths"}
    assert set(record["fast_paths"]) == set(fast_path_record())
    s = record["settings"]
    assert s["rel_sizes"] == [0.5] and s["stages"] == [3] and s["size"] == 64 and s["num_images"] == 2
    assert s["labels"] is False and s["no_labels_reason"] and s["seed"] == 0 and s["world_size"] == 1
    assert [r["model"] for r in record["models"]] == ["hpx_former_s4"] == [r.model for r in comparison.results]
    assert any("convformer_s18" in m and "skipped" in m for m in messages)
    assert (tmp_path / "truncation.csv").is_file() and (tmp_path / "truncation.png").is_file()


def test_runtime_record_has_settings_and_fast_paths(tmp_path):
    settings = rt.RuntimeSettings(**{**RUNTIME_TINY, "num_threads": 1, "max_call_s": 100.0})
    rows = []
    result = rt.runtime_job(settings, RunContext(out_dir=tmp_path), Hooks(on_batch=rows.append))
    record = json.loads((tmp_path / "runtime.json").read_text())
    assert record["settings"] == settings.describe() and set(record["fast_paths"]) == set(fast_path_record())
    assert record["settings"]["max_call_s"] == 100.0 and record["settings"]["num_threads"] == 1
    assert record["max_call_seconds"] == 100.0 and record["threads"] == 1 and record["memory_budget_gib"] == 4.0
    assert len(rows) == len(result.table) == 2


def test_kernel_coverage_and_probe_jobs_write_what_the_commands_write(tmp_path):
    run = RunContext(out_dir=tmp_path)
    kernels = kernels_job(["hpx_s4=random", "conv_s18=random"], KernelSettings(), run)
    assert [k.model for k in kernels] == ["hpx_former_s4"]
    assert (tmp_path / "kernels_hpx_former_s4.npz").is_file() and (tmp_path / "kernels_hpx_former_s4.png").is_file()
    coverage = coverage_job(["hpx_s4=random"], CoverageSettings(threshold=0.2), run)
    assert pd.read_csv(tmp_path / "coverage.csv").coverage.tolist() == pytest.approx(coverage.blocks.coverage.tolist())
    assert coverage.threshold == 0.2
    evaluated = probe_eval_job(["conv_probe=random"], None, ProbeEvalSettings(num_images=24), run)
    table = pd.read_csv(tmp_path / "probe_eval.csv")
    assert int(table.n.sum()) == 24 == int(evaluated.table.n.sum()) and (tmp_path / "probe_eval.png").is_file()
    given = fixed_test_split(ProbeTask(), 12)  # images given instead of the fixed split: nothing written
    assert int(probe_eval_job(["conv_probe=random"], given).table.n.sum()) == 12


# ----------------------------------------------------------------------------- the report's table
@pytest.fixture
def only_a_tiny_section(monkeypatch):
    """The report's table with one tiny section instead of the six analyses."""
    calls = []

    @dataclass(frozen=True)
    class TinySettings(Settings):
        factor: float = 1.0

    def job(specs, images, settings, run, hooks):
        calls.append((specs, images, settings, run))
        run.out_dir.mkdir(parents=True, exist_ok=True)
        table = pd.DataFrame({"x": [1.0, 2.0], "y": [settings.factor, 2 * settings.factor]})
        table.to_csv(run.out_dir / "tiny.csv", index=False)
        (run.out_dir / "tiny.png").write_bytes(b"png")
        return table

    entry = sections.Section(
        job=job,
        settings=lambda report: TinySettings(factor=float(report.erf_size)),
        markdown=lambda table: ("A tiny section.", f"sum of y: {table.y.sum():g}"),
        figure=9,
        title="A tiny section",
        models=(),
        figure_files=lambda table: ["tiny.png"],
    )
    for name in list(sections.SECTION_TABLE):
        monkeypatch.delitem(sections.SECTION_TABLE, name)
    monkeypatch.setitem(sections.SECTION_TABLE, "tiny", entry)
    return calls


def test_the_table_drives_every_section(tmp_path, only_a_tiny_section):
    manifest, results = build_report(tmp_path / "r", QUICK, device="cpu", log=lambda msg: None)
    ((specs, images, settings, run),) = only_a_tiny_section
    assert specs == [] and images is None and settings.factor == QUICK.erf_size and run.seed == 0
    assert manifest["sections"] == ["tiny"] and set(results) == {"tiny"}
    assert set(manifest["fast_paths"]) == set(fast_path_record())
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Fig. 9: A tiny section" in md and "![tiny tiny.png](tiny/tiny.png)" in md
    assert f"sum of y: {3 * QUICK.erf_size:g}" in md
    assert (tmp_path / "r" / "tiny" / "tiny.csv").is_file()
    assert json.loads((tmp_path / "r" / "report.json").read_text())["sections"] == ["tiny"]


def test_the_report_sections_are_the_table():
    from hpx_analysis import report as rp

    assert rp.SECTIONS == ("kernels", "coverage", "erf", "truncation", "runtime", "probe", "probe_s2", "interactions")
    assert rp.FIGURES == {name: s.figure for name, s in sections.SECTION_TABLE.items()}
    assert rp.FIGURES["runtime"] == 2 and rp.SECTION_MODELS["truncation"] == ("hpx_s18",)
    assert sections.SECTION_TABLE["truncation"].settings(QUICK) == TruncationSettings(
        rel_sizes=QUICK.truncation_rel_sizes,
        batch_size=QUICK.truncation_batch_size,
        num_images=QUICK.truncation_num_images,
    )
    assert sections.SECTION_TABLE["runtime"].settings(QUICK).resolutions == (112, 224)
