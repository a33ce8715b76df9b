"""Result objects: ``load(save(x))`` gives ``x`` back (arrays exactly, frames with pandas.testing),
and the files carry the names and columns of the command-line contract."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from hpx_analysis.coverage import CoverageResult, model_coverage
from hpx_analysis.erf import ErfComparison, ErfResult
from hpx_analysis.erf.metrics import erf_metrics
from hpx_analysis.io.weights import load_model
from hpx_analysis.kernels import KernelResult, kernel_maps
from hpx_analysis.runtime import COLUMNS, RuntimeResult
from hpx_analysis.truncation import TruncationComparison, TruncationResult


def _erf(model: str, seed: int) -> ErfResult:
    rng = np.random.default_rng(seed)
    return ErfResult(
        matrix=rng.random((16, 16)),
        used=["a.png", "b.png"],
        skipped=[{"key": "c.png", "reason": "x"}],
        nonfinite_values=0,
        seconds=1.5,
        method="grad",
        precision="fp32",
        input_size=(16, 16),
        device="cpu",
        settings={"model": model, "size": 16},
        images_per_pass=1,
        model=model,
        weights="random init (seed 0)",
        weights_kind="random",
        run={"seed": 0, "batch_size": 1},
    )


def test_erf_round_trip(tmp_path):
    comparison = ErfComparison([_erf("m_one", 0), _erf("m_two", 1)])
    comparison.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "erf_m_one.json",
        "erf_m_one.npy",
        "erf_m_two.json",
        "erf_m_two.npy",
        "erf_metrics.csv",
    ]
    back = ErfComparison.load(tmp_path)
    for a, b in zip(comparison.results, back.results):
        np.testing.assert_array_equal(a.matrix, b.matrix)
        assert b.matrix.dtype == np.float64
        assert {**vars(a), "matrix": None} == {**vars(b), "matrix": None}
    assert_frame_equal(back.to_frame(), comparison.to_frame())
    assert pd.read_csv(tmp_path / "erf_metrics.csv")["model"].tolist() == ["m_one", "m_two"]
    record = json.loads((tmp_path / "erf_m_one.json").read_text())
    assert record["metrics"] == pytest.approx(erf_metrics(comparison.results[0].matrix), nan_ok=True)
    assert record["num_images"] == 2 and "torch" in record["versions"] and "captum" in record["versions"]


@pytest.fixture(scope="module")
def hpx_s4():
    return load_model("hpx_s4=random", seed=0)


def test_kernels_round_trip(tmp_path, hpx_s4):
    result = kernel_maps(hpx_s4.model, name=hpx_s4.name, channel=[1, 2, 3, 4], weights=hpx_s4.weights)
    path = result.save(tmp_path)
    assert path.name == "kernels_hpx_former_s4.npz"
    back = KernelResult.load(tmp_path, "hpx_former_s4")
    assert (back.model, back.weights) == (result.model, result.weights)
    for a, b in zip(result.stages, back.stages, strict=True):
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.picked, b.picked)
        assert (a.stage, a.block, a.mixer, a.kernel_ndim, a.feature_size, a.channel, a.channel_auto, a.at) == (
            b.stage,
            b.block,
            b.mixer,
            b.kernel_ndim,
            b.feature_size,
            b.channel,
            b.channel_auto,
            b.at,
        )
    assert_frame_equal(back.to_frame(), result.to_frame())
    frame = result.to_frame()
    assert frame["channel"].tolist() == [1, 2, 3, 4]
    assert frame["mean_centre"].tolist() == [
        sk.mean[sk.mean.shape[0] // 2, sk.mean.shape[1] // 2] for sk in result.stages
    ]


def test_kernels_round_trip_1d():
    hb = load_model("hb_s4=random", seed=0)
    result = kernel_maps(hb.model, name=hb.name, at=(0, -1), weights=hb.weights)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        result.save(d)
        back = KernelResult.load(d, hb.name)
    for a, b in zip(result.stages, back.stages, strict=True):
        np.testing.assert_array_equal(a.kernel1d_mean, b.kernel1d_mean)
        assert a.at == b.at and b.kernel_ndim == 1


def test_coverage_round_trip(tmp_path, hpx_s4):
    result = model_coverage(hpx_s4.model, name=hpx_s4.name, weights=hpx_s4.weights)
    result.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coverage.csv", "coverage_channels.csv"]
    back = CoverageResult.load(tmp_path)
    assert_frame_equal(back.blocks, result.blocks)
    assert_frame_equal(back.channels, result.channels)
    assert list(back.to_frame().columns[:5]) == ["model", "stage", "block", "mixer", "coverage"]
    assert back.to_frame()["weights"].unique().tolist() == [hpx_s4.weights]


def _truncation(model: str) -> TruncationResult:
    rows = [dict(model=model, stage=-1, rel_size=float("nan"), metric="kl", value=0.0)]
    rows += [
        dict(model=model, stage=s, rel_size=r, metric="kl", value=0.1 * s + r / 3) for s in (0, 1) for r in (0.5, 2.0)
    ]
    table = pd.DataFrame(rows, columns=["model", "stage", "rel_size", "metric", "value"])
    return TruncationResult(
        table,
        4,
        0,
        {0: 1.98, 1: 1.96},
        ["no labels"],
        model,
        "random init (seed 0)",
        "random",
        {"images_skipped_by_this_process": [["x.png", "unreadable"]], "seconds": 0.5},
    )


def test_truncation_round_trip(tmp_path):
    comparison = TruncationComparison(
        [_truncation("a"), _truncation("b")], {"rel_sizes": [0.5, 2.0], "shape": "square"}
    )
    comparison.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["truncation.csv", "truncation.json"]
    back = TruncationComparison.load(tmp_path)
    assert back.settings == comparison.settings
    for a, b in zip(comparison.results, back.results, strict=True):
        assert_frame_equal(b.table, a.table)
        assert {**vars(a), "table": None} == {**vars(b), "table": None}
    frame = pd.read_csv(tmp_path / "truncation.csv")
    assert list(frame.columns) == ["model", "stage", "rel_size", "metric", "value", "weights"]
    assert_frame_equal(back.to_frame(), comparison.to_frame())


def test_runtime_round_trip(tmp_path):
    table = pd.DataFrame(
        [
            dict(
                mixer="hpx",
                resolution=32,
                feature_size=8,
                mode="forward",
                device="cpu",
                median_ms=1.25,
                min_ms=1.0,
                repeats=3,
                status="ok",
            ),
            dict(
                mixer="attention",
                resolution=64,
                feature_size=16,
                mode="forward",
                device="cpu",
                median_ms=float("nan"),
                min_ms=float("nan"),
                repeats=0,
                status="oom",
            ),
        ],
        columns=COLUMNS,
    )
    result = RuntimeResult(table, {"dim": 64, "batch": 1, "resolutions": [32, 64]})
    result.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runtime.csv", "runtime.json"]
    back = RuntimeResult.load(tmp_path)
    assert_frame_equal(back.to_frame(), table)
    assert back.settings == result.settings
