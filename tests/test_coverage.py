"""Window coverage (Fig. 6) against hand-computed diameters."""

import math

import numpy as np
import pytest
import timm
import torch

import hpx_analysis  # noqa: F401
from hpx_analysis.coverage import axis_extents, model_coverage, window_coverage_2d, window_extent_1d
from hpx_analysis.models import long_conv_mixers


@pytest.fixture()
def hpx_s4():
    torch.manual_seed(0)
    return timm.create_model("hpx_former_s4").eval()


def _stage3_filter(model):
    return [m for s, _, m in long_conv_mixers(model) if s == 3][0].long_conv


@pytest.mark.parametrize("shift, diameter", [(0.0, 5), (0.03, 7), (0.05, 13), (-0.06, 5), (-0.5, 1), (-0.96, 0)])
def test_known_decay_and_shift_axis_diameter(hpx_s4, shift, diameter):
    # stage 3: 13x13 kernel on a 7x7 map; on the centre row the window is exp(-|d|) + shift
    # (|deltas| = 1, distance |d| to the centre tap). Kept: exp(-|d|) >= 0.05 - shift.
    # 0: |d| <= ln 20 = 3.0- -> 5 taps; 0.03: |d| <= ln 50 = 3.9 -> 7; 0.05: all 13;
    # -0.06: |d| <= ln(1/0.11) = 2.2 -> 5; -0.5: only the centre (1 - 0.5) -> 1;
    # -0.96: not even the centre (0.04 < 0.05) -> 0.
    filt = _stage3_filter(hpx_s4)
    with torch.no_grad():
        filt.deltas.fill_(1.0)
        filt.shift.fill_(shift)
    res = model_coverage(hpx_s4, name="m")
    row = res.blocks[res.blocks.stage == 3].iloc[0]
    assert row.mixer == "H_px" and row.source == "window" and row.feature_size == 7
    assert row.diameter == diameter
    assert row.coverage == pytest.approx(diameter / 7)
    ch = res.channels[res.channels.stage == 3]
    assert len(ch) == filt.deltas.shape[1]
    np.testing.assert_allclose(ch.coverage, diameter / 7)


def test_empty_window_has_zero_diameter():
    win = torch.full((2, 5, 5), 0.01)
    cov, diam = window_coverage_2d(win, (4, 4))
    np.testing.assert_array_equal(diam, [0, 0])
    np.testing.assert_array_equal(cov, [0, 0])


def test_area_reading(hpx_s4):
    filt = _stage3_filter(hpx_s4)
    with torch.no_grad():
        filt.deltas.fill_(1.0)
        filt.shift.fill_(0.0)
    # taps with distance <= ln 20 = 2.996: every (i, j) with i^2 + j^2 <= 8: 1 centre,
    # 4 at (1, 0), 4 at (1, 1), 4 at (2, 0), 8 at (2, 1), 4 at (2, 2) -> 25 taps
    res = model_coverage(hpx_s4, reading="area")
    row = res.blocks[res.blocks.stage == 3].iloc[0]
    assert row.diameter == pytest.approx(2 * math.sqrt(25 / math.pi))
    assert row.coverage == pytest.approx(2 * math.sqrt(25 / math.pi) / 7)
    with pytest.raises(ValueError, match="diameter reading"):
        model_coverage(hpx_s4, reading="diagonal")


def test_per_channel_mean(hpx_s4):
    filt = _stage3_filter(hpx_s4)
    with torch.no_grad():
        filt.deltas.fill_(1.0)
        filt.shift.fill_(0.0)
        filt.deltas[0, 0] = 1e-6  # channel 0: no decay -> the whole 13-tap row
    res = model_coverage(hpx_s4)
    ch = res.channels[res.channels.stage == 3].sort_values("channel")
    assert ch.coverage.iloc[0] == pytest.approx(13 / 7)
    assert ch.coverage.iloc[1] == pytest.approx(5 / 7)
    C = len(ch)
    row = res.blocks[res.blocks.stage == 3].iloc[0]
    assert row.coverage == pytest.approx((13 / 7 + (C - 1) * 5 / 7) / C)


def test_axis_extent_counts_outermost_taps():
    win = torch.zeros(1, 7, 7)
    win[0, 3, [1, 3, 4]] = 1.0  # gap at 2: the extent is still from 1 to 4
    win[0, [3], 3] = 1.0
    rows, cols = axis_extents(win)
    assert rows.tolist() == [4.0] and cols.tolist() == [1.0]


def test_hb_window_on_token_axis():
    torch.manual_seed(0)
    model = timm.create_model("hb_former_s4").eval()
    mixer = [m for s, _, m in long_conv_mixers(model) if s == 3][0]
    L = 49
    # t = |d| / 48; window exp(-t delta) >= 0.05 <=> |d| <= 48 ln 20 / delta = 10.5 -> 21 taps
    mixer.filter_fn.modulation.deltas.fill_(48 * math.log(20) / 10.5)
    assert window_extent_1d(mixer.window()).tolist() == [21.0] * mixer.dim
    res = model_coverage(model)
    row = res.blocks[res.blocks.stage == 3].iloc[0]
    assert row.mixer == "H_b" and row.source.startswith("window (1D")
    assert row.coverage == pytest.approx(21 / L)


def test_conv_and_attention_values():
    conv = model_coverage(timm.create_model("convformer_s18"), name="conv")
    assert conv.blocks.groupby("stage").coverage.first().tolist() == pytest.approx([7 / 56, 7 / 28, 7 / 14, 1.0])
    assert set(conv.blocks.mixer) == {"SepConv"}
    mixed = model_coverage(timm.create_model("hpx_a_former_s18"), name="hpx_a")
    att = mixed.blocks[mixed.blocks.stage >= 2]
    assert set(att.mixer) == {"Attention"} and (att.coverage == 2.0).all()
    assert list(mixed.blocks.depth) == list(range(18))


def test_model_without_mixers_gives_note():
    res = model_coverage(torch.nn.Linear(2, 2), name="lin")
    assert res.blocks.empty and "no MetaFormer token mixers" in res.notes[0]
