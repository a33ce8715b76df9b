"""Token-mixer runtime sweep (Fig. 2): library, plot and `hpx-analyze runtime`."""

from __future__ import annotations

import math
import time

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

from hpx_analysis import runtime as rt
from hpx_analysis.models.mixers.filters import ImplicitFilter1d
from hpx_analysis.plotting.runtime import plot_runtime

TINY = dict(resolutions=(32, 64), device="cpu", warmup=0, repeats=2, max_repeats=2, num_threads=1)


@pytest.fixture(scope="module")
def sweep() -> pd.DataFrame:
    return rt.measure_mixer_runtime(**TINY)


def test_sweep_rows_and_columns(sweep):
    assert list(sweep.columns) == rt.COLUMNS
    assert len(sweep) == len(rt.MIXERS) * len(rt.MODES) * 2
    keys = set(zip(sweep["mixer"], sweep["mode"], sweep["resolution"]))
    assert keys == {(m, md, r) for m in rt.MIXERS for md in rt.MODES for r in (32, 64)}
    assert (sweep["feature_size"] == sweep["resolution"] // 4).all()
    assert (sweep["status"] == "ok").all()
    assert (sweep["device"] == "cpu").all()
    assert (sweep["repeats"] == 2).all()
    assert (sweep["min_ms"] > 0).all()
    assert (sweep["median_ms"] >= sweep["min_ms"]).all()
    assert (sweep["p10_ms"] >= sweep["min_ms"]).all() and (sweep["p90_ms"] >= sweep["median_ms"]).all()
    assert (sweep["p10_ms"] <= sweep["median_ms"]).all()
    assert (sweep["spread"] - sweep["p90_ms"] / sweep["p10_ms"]).abs().max() < 1e-12


def test_attention_over_budget_is_recorded_and_sweep_continues():
    # 64 px -> 16x16 = 256 tokens, 2 heads: 2 * 256^2 * 4 B = 0.5 MiB > 0.1 MiB budget;
    # 32 px -> 64 tokens: 32 KiB, fits
    df = rt.measure_mixer_runtime(
        mixers=("attention", "sepconv"),
        mode="forward",
        memory_budget_gib=0.1 / 1024,
        **{**TINY, "repeats": 1, "max_repeats": 1},
    )
    att = df[df["mixer"] == "attention"].set_index("resolution")
    assert att.loc[32, "status"] == "ok" and att.loc[32, "median_ms"] > 0
    assert att.loc[64, "status"].startswith("oom (estimated")
    assert math.isnan(att.loc[64, "median_ms"]) and att.loc[64, "repeats"] == 0
    sep = df[df["mixer"] == "sepconv"]
    assert len(sep) == 2 and (sep["status"] == "ok").all()


def test_attention_score_bytes_match_a_materialised_score_matrix():
    mixer = rt.build_mixer("attention", 64)
    q = torch.randn(1, mixer.num_heads, 16 * 16, mixer.head_dim)
    scores = q @ q.transpose(-1, -2)
    assert rt.attention_score_bytes(64) == scores.nelement() * scores.element_size()
    # 896 px, 64 channels (2 heads), float32: 2 * 50176^2 * 4 bytes
    assert rt.attention_score_bytes(896) == 2 * 50176**2 * 4


@pytest.mark.parametrize("name", rt.MIXERS)
@pytest.mark.parametrize("resolution", (32, 64))
def test_built_mixers_map_the_feature_map_to_itself(name, resolution):
    f = resolution // 4
    mixer = rt.build_mixer(name, resolution).eval()
    with torch.no_grad():
        y = mixer(torch.randn(2, f, f, 64))
    assert y.shape == (2, f, f, 64)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("resolution", (32, 64))
def test_hpx_kernel_covers_the_whole_map(resolution):
    f = resolution // 4
    mixer = rt.build_mixer("hpx", resolution)
    kernel = mixer.effective_kernel()
    assert kernel.shape == (64, 2 * f - 1, 2 * f - 1)
    # an impulse in one corner reaches the opposite corner through the corner tap
    u = torch.zeros(1, 64, f, f)
    u[..., 0, 0] = 1.0
    with torch.no_grad():
        y = mixer.long_convolution(u)
    torch.testing.assert_close(y[0, :, f - 1, f - 1], kernel[:, -1, -1], rtol=1e-4, atol=1e-6)
    assert kernel[:, -1, -1].abs().max() > 0
    sep = rt.build_mixer("hpx_sep", resolution)
    assert sep.effective_kernel().shape == (64, 2 * f - 1, 2 * f - 1)


def test_hb_kernel_spans_all_token_pairs():
    mixer = rt.build_mixer("hb", 64)
    assert mixer.effective_kernel().shape == (64, 2 * 16**2 - 1)


def test_forward_timing_excludes_filter_generation(monkeypatch):
    calls = []
    original = ImplicitFilter1d.untruncated_kernel

    def counting(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(ImplicitFilter1d, "untruncated_kernel", counting)
    hb_32 = dict(mixers=("hb",), resolutions=(32,), device="cpu", warmup=1, repeats=3, max_repeats=3, num_threads=1)
    rt.measure_mixer_runtime(mode="forward", **hb_32)
    assert len(calls) == 1  # generated once, in the untimed priming call, then cached
    calls.clear()
    rt.measure_mixer_runtime(mode="forward_backward", **hb_32)
    assert len(calls) == 5  # as in training: every call (priming + warm-up + 3 timed)


def test_time_calls_measures_wall_time():
    times = rt.time_calls(lambda: time.sleep(0.005), repeats=3)
    assert len(times) == 3
    assert all(5.0 <= t < 500.0 for t in times)


def test_slow_mixers_skip_larger_resolutions():
    df = rt.measure_mixer_runtime(
        mixers=("hpx",),
        mode="forward_backward",
        max_call_s=1e-9,
        **{**TINY, "resolutions": (32, 64, 128), "repeats": 1, "max_repeats": 1},
    )
    assert list(df["status"][:1]) == ["ok"]
    assert all(s.startswith("skipped: 32 px") for s in df["status"][1:])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mixers=("conv",)), "unknown mixer"),
        (dict(resolutions=(30,)), "multiple of the patch size"),
        (dict(mode="backward"), "unknown mode"),
        (dict(repeats=0), "repeats"),
        (dict(repeats=5, max_repeats=3), "max_repeats .3. must be at least repeats .5."),
        (dict(budget_s=0.0), "budget_s must be a positive"),
        (dict(max_call_s=math.inf), "max_call_s must be a positive finite"),
        (dict(warmup=-1), "warmup must be at least 0"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rt.measure_mixer_runtime(**{**TINY, **kwargs})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(resolutions=[32.5]), r"resolutions \(px\) must be whole numbers, got 32.5"),
        (dict(resolutions=[32.0]), "must be whole numbers, got 32.0"),
        (dict(repeats=2.5), "repeats must be whole numbers"),
        (dict(max_repeats=True), "max_repeats must be whole numbers"),
        (dict(warmup=1.0), "warmup must be whole numbers"),
        (dict(dim=64.5), "dim must be whole numbers"),
        (dict(batch="2"), "batch must be whole numbers"),
        (dict(num_threads=1.5), "num_threads must be whole numbers"),
        (dict(budget_s="1"), "budget_s must be a number"),
        (dict(memory_budget_gib=True), "memory_budget_gib must be a number"),
    ],
)
def test_non_whole_numbers_are_refused_not_coerced(kwargs, message):
    with pytest.raises(TypeError, match=message):
        rt.runtime_sweep(**{**TINY, **kwargs})


def test_whole_numbers_of_any_integer_type_are_accepted():
    import numpy as np

    settings = rt.RuntimeSettings(resolutions=[np.int64(64), 32], repeats=np.int32(3))
    assert settings.resolutions == (32, 64) and type(settings.resolutions[1]) is int and settings.repeats == 3


def test_plot_draws_lines_and_marks_oom(sweep):
    df = sweep.copy()
    df.loc[(df["mixer"] == "attention") & (df["resolution"] == 64), ["median_ms", "min_ms"]] = math.nan
    df.loc[(df["mixer"] == "attention") & (df["resolution"] == 64), "status"] = "oom"
    fig = plot_runtime(df)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(ax.lines) == len(rt.MIXERS) * len(rt.MODES)
    from matplotlib.collections import PathCollection, PolyCollection

    # one OOM marker set per attention mode; one p10-p90 band per measured (mixer, mode)
    assert sum(isinstance(c, PathCollection) for c in ax.collections) == 2
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == len(rt.MIXERS) * len(rt.MODES)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "out of memory" in labels and "H_px" in labels


def test_real_out_of_memory_is_recorded_and_sweep_continues(monkeypatch):
    build = rt.build_mixer

    def build_or_fail(name, resolution, dim=64):
        if name == "hpx" and resolution == 64:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return build(name, resolution, dim)

    monkeypatch.setattr(rt, "build_mixer", build_or_fail)
    df = rt.measure_mixer_runtime(mixers=("hpx", "sepconv"), mode="forward", **{**TINY, "repeats": 1, "max_repeats": 1})
    assert list(df["status"]) == ["ok", "oom", "ok", "ok"]
    assert df["repeats"].tolist() == [1, 0, 1, 1]


def test_other_errors_are_not_hidden_as_oom(monkeypatch):
    def broken(name, resolution, dim=64):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(rt, "build_mixer", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        rt.measure_mixer_runtime(mixers=("hpx",), **TINY)


def test_cli_writes_csv_png_and_json(tmp_path):
    from typer.testing import CliRunner

    from hpx_analysis.cli.main import app

    out = tmp_path / "rt"
    result = CliRunner().invoke(
        app,
        [
            "runtime",
            "--mixers",
            "hpx,attention",
            "--resolutions",
            "32, 64",
            "--mode",
            "forward",
            "--device",
            "cpu",
            "--repeats",
            "1",
            "--max-repeats",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--memory-budget-gb",
            str(0.1 / 1024),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "runtime.csv")
    assert list(df.columns) == rt.COLUMNS
    assert len(df) == 4 and set(df["mode"]) == {"forward"}
    att = df[df["mixer"] == "attention"].set_index("resolution")
    assert att.loc[64, "status"].startswith("oom") and att.loc[32, "status"] == "ok"
    assert (df.loc[df["status"] == "ok", "median_ms"] > 0).all()
    assert (out / "runtime.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import json

    settings = json.loads((out / "runtime.json").read_text())
    assert settings["threads"] == 1 and settings["repeats"] == 1 and settings["modes"] == ["forward"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--mode", "sideways"], "Invalid value for '--mode'"),
        (["--resolutions", "30"], "multiple of the patch size"),
        (["--resolutions", "32,abc"], "whole numbers of pixels"),
        (["--mixers", "conv"], "unknown mixer"),
        (["--time-budget", "0"], "budget_s must be a positive"),
        (["--repeats", "5", "--max-repeats", "3"], "max_repeats (3) must be at least repeats (5)"),
    ],
)
def test_cli_rejects_bad_input_without_traceback(tmp_path, args, message):
    from typer.testing import CliRunner

    from hpx_analysis.cli.main import app

    result = CliRunner().invoke(app, ["runtime", "--device", "cpu", "--out", str(tmp_path / "x"), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "x").exists()


def _planted(times):
    """A fake timer: each call returns the next planted time (ms)."""
    it = iter(times)
    return lambda: next(it)


def test_estimator_picks_the_low_percentile_of_noisy_calls():
    # a 10 ms call, slowed down by other work in most calls (as on a busy machine):
    # 40 quiet calls at 10.0-10.4 ms, 60 at 25-120 ms, shuffled
    rng = np.random.default_rng(0)
    quiet = 10.0 + 0.4 * rng.random(40)
    busy = rng.uniform(25.0, 120.0, 60)
    times = rng.permutation(np.concatenate([quiet, busy]))
    got = rt.adaptive_times(_planted(times), min_repeats=5, max_repeats=100, budget_s=None)
    row = rt.summarize_times(got)
    # the 10th percentile lies among the quiet calls, the median among the busy ones
    assert 10.0 <= row["p10_ms"] <= 10.4
    assert row["median_ms"] > 25.0
    assert row["p10_ms"] == pytest.approx(np.percentile(got, 10)) and row["repeats"] == len(got)
    assert row["min_ms"] == min(got) and row["spread"] == pytest.approx(row["p90_ms"] / row["p10_ms"])


def test_adaptive_times_stops_when_stable_at_the_budget_or_at_the_maximum():
    # constant times: the estimate is stable from the first call, so the fewest calls suffice
    assert len(rt.adaptive_times(_planted([5.0] * 100), min_repeats=4, max_repeats=100)) == 4
    # a falling estimate (each call faster than the last) is never stable: the maximum stops it
    falling = [100.0 / (i + 1) for i in range(100)]
    assert len(rt.adaptive_times(_planted(falling), min_repeats=3, max_repeats=12)) == 12
    # ... or the time budget: 100 + 50 + 33.3 + 25 >= 200 ms after 4 calls, 3 < 4 is not
    assert len(rt.adaptive_times(_planted(falling), min_repeats=3, max_repeats=50, budget_s=0.2)) == 4
    # never fewer than min_repeats, even when the first call alone used the budget
    assert len(rt.adaptive_times(_planted([1e4] + falling), min_repeats=3, max_repeats=50, budget_s=0.2)) == 3
    with pytest.raises(ValueError, match="min_repeats <= max_repeats"):
        rt.adaptive_times(_planted(falling), min_repeats=5, max_repeats=4)


def _table(values):
    """A runtime table from ``{(mixer, mode, resolution): p10_ms}``."""
    rows = [
        dict(mixer=m, mode=mode, resolution=r, status="ok", p10_ms=v, min_ms=v) for (m, mode, r), v in values.items()
    ]
    return pd.DataFrame(rows)


def test_monotonicity_check_flags_what_the_computation_rules_out():
    consistent = {
        ("hpx", "forward", 112): 1.0,
        ("hpx", "forward", 224): 4.0,
        ("hpx", "forward_backward", 112): 3.0,
        ("hpx", "forward_backward", 224): 12.0,
        # within noise: 5 % slower at the smaller size, 0.03 ms on tiny timings
        ("sepconv", "forward", 112): 0.105,
        ("sepconv", "forward", 224): 0.1,
        ("sepconv", "forward_backward", 112): 0.30,
        ("sepconv", "forward_backward", 224): 0.33,
    }
    assert rt.monotonicity_violations(_table(consistent)) == []
    broken = {
        **consistent,
        ("attention", "forward", 112): 8.76,  # forward slower than forward + backward
        ("attention", "forward_backward", 112): 7.77,
        ("attention", "forward", 224): 47.6,
        ("attention", "forward_backward", 224): 60.0,
        ("hpx", "forward_backward", 448): 5.0,  # faster than at 224 px
    }
    found = rt.monotonicity_violations(_table(broken))
    assert found == [
        "attention at 112 px: forward 8.76 ms > forward+backward 7.77 ms",
        "hpx forward_backward: 448 px 5 ms < 224 px 12 ms",
    ]
    # a larger allowance accepts the 13 % excess of attention's forward
    assert rt.monotonicity_violations(_table(broken), rel_tol=0.2) == [found[1]]
    # rows that were not measured are not compared
    table = _table(broken)
    table.loc[table["resolution"] == 448, "status"] = "oom"
    assert rt.monotonicity_violations(table) == [found[0]]


def test_sweep_records_violations_and_warns_once_about_a_large_spread(monkeypatch):
    from hpx_analysis.settings import Hooks

    planted = {  # (mixer, mode, resolution) -> timed calls (ms)
        ("sepconv", "forward", 32): [1.0, 1.0, 1.1, 1.0, 9.0],
        ("sepconv", "forward", 64): [4.0, 4.0, 4.0, 4.0, 4.0],
        ("sepconv", "forward_backward", 32): [0.5, 0.5, 0.5, 0.5, 0.5],  # faster than its forward
        ("sepconv", "forward_backward", 64): [9.0, 30.0, 9.0, 40.0, 9.0],
    }
    monkeypatch.setattr(rt, "_measure_one", lambda name, r, mode, dev, settings, seed: planted[(name, mode, r)])
    lines = []
    result = rt.runtime_sweep(mixers=("sepconv",), **{**TINY, "max_repeats": 5}, hooks=Hooks(log=lines.append))
    df = result.table.set_index(["mode", "resolution"])
    assert df.loc[("forward", 32), "p10_ms"] == pytest.approx(np.percentile(planted[("sepconv", "forward", 32)], 10))
    assert df.loc[("forward_backward", 64), "repeats"] == 5
    assert result.settings["monotonicity_violations"] == ["sepconv at 32 px: forward 1 ms > forward+backward 0.5 ms"]
    spread_lines = [line for line in lines if "varied by more than" in line]
    assert len(spread_lines) == 1 and "2 of 4 timings" in spread_lines[0]
    assert sum("contradict the computation" in line for line in lines) == 1
