"""The two-stage probes at 128 px: models, receptive fields by hand, the task size taken from the
model, Wilson intervals and measured reach, truncation per distance, and the bundled checkpoints
against their records and the known per-stage answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from typer.testing import CliRunner

from hpx_analysis.cli.main import app
from hpx_analysis.io.weights import load_model
from hpx_analysis.models import PROBES
from hpx_analysis.models.mixers import HyenaPixel, SepConv
from hpx_analysis.probe.analysis import (
    FAR_STAGE,
    TRUNCATION_PROBE_COLUMNS,
    far_truncation,
    predicted_reach_px,
    probe_truncation,
    receptive_radius_px,
)
from hpx_analysis.probe.bundled import bundled_models, bundled_record
from hpx_analysis.probe.evaluate import (
    EVAL_COLUMNS,
    SMALL_REPS,
    TEST_REPS,
    accuracy_by_distance,
    accuracy_truncated,
    distance_bins,
    fixed_test_split,
    iter_test_split,
    pooled_accuracy,
)
from hpx_analysis.probe.intervals import measured_reach, reach_level, wilson_interval
from hpx_analysis.probe.task import ProbeBatch, ProbeTask, probe_task_for
from hpx_analysis.probe.train import TrainConfig, accuracy, train_probe
from hpx_analysis.settings import RunContext

S2 = ("hpx_probe_s2", "conv_probe_s2", "c_hpx_probe_s2", "hpx_c_probe_s2")
MIXERS = {
    "hpx_probe_s2": (HyenaPixel, HyenaPixel),
    "conv_probe_s2": (SepConv, SepConv),
    "c_hpx_probe_s2": (SepConv, HyenaPixel),
    "hpx_c_probe_s2": (HyenaPixel, SepConv),
}
CENTRE = 65  # 128 // 2 + 1: the readout unit's receptive-field centre (row and column)


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name).eval()


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", S2)
def test_s2_models_have_the_named_mixer_in_each_stage(name):
    assert name in PROBES
    m = _model(name)
    assert m.img_size == 128 and m.feature_sizes == ((32, 32), (16, 16)) and m.global_pool == "centre"
    assert [len(s) for s in m.stages] == [1, 1] and m.dims == (32, 64)
    assert tuple(type(s[0].token_mixer) for s in m.stages) == MIXERS[name]
    kernels = [s[0].token_mixer.long_conv.kernel_shape for s in m.stages if isinstance(s[0].token_mixer, HyenaPixel)]
    expected = [k for k, c in zip([(63, 63), (31, 31)], MIXERS[name]) if c is HyenaPixel]
    assert kernels == expected  # long kernels of 2n - 1 taps: the whole map from every unit
    x = torch.randn(2, 3, 128, 128)
    f = m.forward_features(x)
    assert f.shape[-2:] == (16, 16)
    torch.testing.assert_close(m(x), m.head(m.norm(f[:, :, 8, 8])))


def _changes_output(m, row: int | None = None, col: int | None = None) -> bool:
    torch.manual_seed(1)
    x = torch.randn(1, 3, 128, 128)
    y = x.clone()
    if row is not None:
        y[:, :, row] += 3.0
    else:
        y[:, :, :, col] += 3.0
    with torch.no_grad():
        return not torch.equal(m(x), m(y))


def test_conv_probe_s2_receptive_field_by_hand():
    """Stem 7x7 stride 4 (+-3 px), SepConv 7x7 on the stride-4 map (+-3 units = +-12 px), the
    3x3 stride-2 merge read at stride 4 (+-4 px), SepConv 7x7 on the stride-8 map (+-24 px):
    43 px around pixel 65; the output changes with row or column 65 -+ 43 and not one beyond."""
    m = _model("conv_probe_s2")
    assert receptive_radius_px(m) == 3 + 3 * 4 + 1 * 4 + 3 * 8 == 43
    task = probe_task_for(m)
    assert predicted_reach_px(m, 0, 0.125, task) == 43 + 2  # nothing to truncate; + half the square
    assert task.d_max == 60 and distance_bins(task)[-1][0] > 43 + task.square // 2
    for edge, beyond in ((CENTRE - 43, CENTRE - 44), (CENTRE + 43, CENTRE + 44)):
        assert _changes_output(m, row=edge) and not _changes_output(m, row=beyond)
        assert _changes_output(m, col=edge) and not _changes_output(m, col=beyond)


def test_truncated_hybrid_receptive_field_by_hand():
    """c_hpx_probe_s2 with stage 1's H_px kernel truncated to 0.125 of 16 units: 2 units wide,
    so floor((2 - 1) / 2) = 0 taps either side, plus the 5x5 short conv (+-2 units = +-16 px):
    3 + 12 + 4 + 16 = 35 px."""
    m = _model("c_hpx_probe_s2")
    (mixer,) = [s[0].token_mixer for s in m.stages if isinstance(s[0].token_mixer, HyenaPixel)]
    assert receptive_radius_px(m, {1: 0.125}) == 35
    assert predicted_reach_px(m, 1, 0.125, probe_task_for(m)) == 37
    assert math.isinf(receptive_radius_px(_model("attn_probe")))
    mixer.set_truncation(0.125)
    try:
        assert _changes_output(m, row=CENTRE - 35) and not _changes_output(m, row=CENTRE - 36)
    finally:
        mixer.set_truncation(None)
    assert _changes_output(m, row=0)  # untruncated: the whole image


def test_task_size_comes_from_the_model():
    assert probe_task_for(_model("hpx_probe_s2")) == ProbeTask(size=128)
    assert probe_task_for(_model("hpx_probe")) == ProbeTask()
    t = ProbeTask(size=128)
    assert (t.centre, t.d_min, t.d_max) == (CENTRE, 2, 60)
    block = t.test_block(0)
    assert block.images.shape[1:] == (3, 128, 128) and len(block) == 59 * 4
    counts = pd.crosstab(block.distances.numpy(), block.labels.numpy()).to_numpy()
    assert (counts == 1).all() and TEST_REPS * t.num_classes >= 96


def test_test_split_has_96_images_per_distance_and_streams():
    t = ProbeTask()
    blocks = list(iter_test_split(t))
    full = fixed_test_split(t)
    assert len(blocks) == TEST_REPS and torch.equal(torch.cat([b.images for b in blocks]), full.images)
    per_d = np.bincount(full.distances.numpy())[t.d_min :]
    assert (per_d == 96).all()
    assert len(fixed_test_split(t, num_images=130)) == 130 and len(list(iter_test_split(t, num_images=130))) == 2
    far = distance_bins(t)[-1]
    kept = torch.cat([b.distances for b in iter_test_split(t, reps=2, d_range=far)])
    assert kept.min() == far[0] and kept.max() == far[1] and len(kept) == 2 * 4 * (far[1] - far[0] + 1)


# ----------------------------------------------------------------------------- intervals, reach
def test_wilson_interval_hand_values():
    # worked out by hand: 0/10 -> (0, z^2 / (n + z^2)); 96/96 -> (n / (n + z^2), 1)
    z2 = 1.959963984540054**2
    low, high = wilson_interval([0, 5, 3, 96], [10, 10, 20, 96])
    np.testing.assert_allclose(low, [0.0, 0.236593, 0.052369, 96 / (96 + z2)], atol=1e-6)
    np.testing.assert_allclose(high, [z2 / (10 + z2), 0.763407, 0.360419, 1.0], atol=1e-6)
    # the endpoints solve (p_hat - p)^2 = z^2 p (1 - p) / n
    k, n = np.array([1, 7, 40, 55]), np.array([9, 31, 96, 60])
    for end in wilson_interval(k, n):
        np.testing.assert_allclose((k / n - end) ** 2, z2 * end * (1 - end) / n, atol=1e-12)
    assert np.isnan(wilson_interval(0, 0)[0])


def test_measured_reach_rule():
    acc = [1.0, 1.0, 0.9, 0.7, 0.55, 0.3, 0.9]
    d = np.arange(2, 9)
    n = np.full(len(d), 96)
    low, high = wilson_interval(np.round(np.array(acc) * n), n)
    table = pd.DataFrame(dict(distance_px=d, accuracy=acc, n=n, ci_low=low, ci_high=high))
    level = reach_level(4)
    assert level == 0.625
    r = measured_reach(table, level)
    # accuracies above 0.625 up to d = 5 (0.7; the 0.9 at d = 8 comes after a failure)
    assert r["reach_px"] == 5 and not r["saturated"]
    # 0.7 of 96: lower bound 0.60 < 0.625, so the established reach ends at d = 4;
    # 0.55 of 96: upper bound 0.65 > 0.625, so the not-yet-excluded reach ends at d = 6
    assert low[3] < level < low[2] and high[4] > level > high[5]
    assert (r["reach_low_px"], r["reach_high_px"]) == (4, 6)
    assert math.isnan(measured_reach(table.assign(accuracy=0.2, ci_low=0.1, ci_high=0.3), level)["reach_px"])
    assert measured_reach(table.assign(accuracy=1.0, ci_low=0.96, ci_high=1.0), level)["saturated"]


def test_accuracy_table_carries_wilson_intervals():
    m = _model("conv_probe")
    t = ProbeTask()
    table = accuracy_by_distance(m, iter_test_split(t, reps=2), name="conv_probe")
    assert list(table.columns) == EVAL_COLUMNS and (table.n == 8).all()
    low, high = wilson_interval(np.round(table.accuracy * 8), 8)
    np.testing.assert_allclose(table.ci_low, low) and np.testing.assert_allclose(table.ci_high, high)
    pooled = pooled_accuracy(table, 2, 5)
    assert pooled["n"] == 32 and pooled["correct"] == round(float((table.accuracy * table.n)[:4].sum()))


# ----------------------------------------------------------------------------- truncation
@pytest.mark.slow
def test_probe_truncation_two_stages_per_distance():
    class Loaded:
        model, name, weights, weights_kind = _model("hpx_c_probe_s2"), "hpx_c_probe_s2", "random", "random"

    result, by_d = probe_truncation(Loaded, rel_sizes=(0.125, 1.0), num_images=236)
    assert list(by_d.columns) == TRUNCATION_PROBE_COLUMNS
    assert set(by_d.stage) == {-1, 0} and by_d.distance_px.max() == 60  # 128 px task, stage 1 is SepConv
    assert "top5" not in set(result.table.metric) and "top1" in set(result.table.metric)
    assert by_d[by_d.stage == 0].predicted_reach_px.tolist()[0] == 45  # 3 + (1 + 2) 4 + 4 + 24 + 2
    assert (by_d.ci_low <= by_d.accuracy).all() and (by_d.accuracy <= by_d.ci_high).all()
    far = far_truncation(by_d, probe_task_for(Loaded.model))
    assert set(zip(far.stage, far.rel_size.fillna(-1))) == {(-1, -1), (0, 0.125), (0, 1.0)}
    assert distance_bins(probe_task_for(Loaded.model))[-1] == (47, 60)  # ceil of 2 + 3 x 59 / 4
    assert (far.n == 4 * 14).all()  # the far quarter of one block
    assert Loaded.model.stages[0][0].token_mixer.truncation is None


def test_probe_eval_command_on_a_two_stage_probe(tmp_path):
    r = CliRunner().invoke(
        app, ["probe", "eval", "-m", "conv_probe_s2=random", "--num-images", "236", "--out", str(tmp_path)]
    )
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp_path / "probe_eval.csv")
    assert list(table.columns) == EVAL_COLUMNS and table.distance_px.max() == 60 and (table.n == 4).all()


def test_two_stage_smoke_training(tmp_path):
    m = _model("c_hpx_probe_s2").train()
    cfg = TrainConfig(steps=2, batch_size=4, warmup=1, eval_every=2, val_size=8, task={"size": 128})
    res = train_probe(m, cfg, RunContext(out_dir=tmp_path), name="c_hpx_probe_s2")
    assert len(res.log) == 2 and (tmp_path / "c_hpx_probe_s2.safetensors").is_file()


# ----------------------------------------------------------------------------- bundled weights
@pytest.mark.slow
@pytest.mark.parametrize("name", S2)
def test_bundled_s2_checkpoint_matches_its_record(name):
    """Recompute the first test block (and its far quarter under the smallest truncation) and
    compare with what probes.json recorded for the full split."""
    assert name in bundled_models(), f"no bundled checkpoint for {name}"
    record = bundled_record(name)
    model = load_model(name, seed=0).model
    task = probe_task_for(model)
    assert record["task"]["size"] == 128 and record["test_images_per_distance"] >= 96
    small = fixed_test_split(task, reps=SMALL_REPS)
    correct = int(accuracy(model, small.images, small.labels).sum())
    assert abs(correct - record["small_test_correct"]) <= 1, (correct, record["small_test_correct"])
    trunc = record["truncation"]
    far = distance_bins(task)[-1]
    small_far = ProbeBatch.concat(list(iter_test_split(task, reps=SMALL_REPS, d_range=far)))
    assert len(small_far) == trunc["small_far_images"] == 4 * (far[1] - far[0] + 1)
    for stage, expected in trunc["small_far_correct"].items():
        table = accuracy_truncated(model, small_far, (int(stage), min(trunc["rel_sizes"])))
        assert abs(pooled_accuracy(table, *far)["correct"] - expected) <= 1


def _far(name: str, stage: str | None = None, rel: float = 0.125) -> float:
    record = bundled_record(name)
    if stage is None:
        return record["far_quarter"]["accuracy"]
    return record["truncation"]["stages"][stage][str(rel)]["accuracy"]


def test_bundled_s2_records_meet_the_known_answers():
    assert set(S2) <= set(bundled_models())
    chance = 1 / 4
    assert _far("hpx_probe_s2") >= 0.9
    assert abs(_far("conv_probe_s2") - chance) <= 0.15
    for name, stage in FAR_STAGE.items():
        assert _far(name) >= 0.9
        assert _far(name) - _far(name, str(stage)) >= 0.4
        assert list(bundled_record(name)["truncation"]["stages"]) == [str(stage)]  # the other stage is SepConv
