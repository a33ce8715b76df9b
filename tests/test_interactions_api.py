"""The interaction analysis end to end: results, files, the command, models of timm, skipped
blocks, and the bundled probes (a local mixer's reach against a global one's)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import timm
import torch
from torch import nn
from typer.testing import CliRunner

from hpx_analysis.cli.main import app
from hpx_analysis.interactions import InteractionResult, InteractionSettings, NoMixersError, interaction_maps
from hpx_analysis.io.weights import load_model
from hpx_analysis.probe.analysis import probe_image_tensors

runner = CliRunner()


def _hooks_and_grads(model: nn.Module):
    hooks = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())
    return hooks, [p.requires_grad for p in model.parameters()]


def test_result_round_trip_and_frame(make_s4, tmp_path):
    model = make_s4("hpx")
    before = _hooks_and_grads(model)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    res = interaction_maps(model, images, size=64, queries_sampled=8, rollout=True, name="hpx_former_s4")
    assert _hooks_and_grads(model) == before  # the model is left as found
    frame = res.to_frame()
    assert list(frame.stage) == [0, 1, 2, 3] and set(frame.images) == {2}
    assert list(frame.queries) == [8, 8, 8, 4]  # stage 3 has 2 x 2 tokens: all of them
    assert (frame.mean_distance_px >= 0).all() and (frame.std_distance_px >= 0).all()
    first = res.blocks[0]
    assert first.grid == (16, 16) and first.query_tokens == {"centre": (8, 8), "edge": (8, 0), "corner": (0, 0)}
    assert set(first.maps) == {"centre", "edge", "corner"} and first.maps["centre"].shape == (16, 16)
    for query, array in res.rollout.items():
        assert array.shape == (64, 64) and array.sum() == pytest.approx(1.0, rel=1e-4), query
    back = InteractionResult.load(res.save(tmp_path))
    assert back.to_frame().equals(frame)
    np.testing.assert_array_equal(back.blocks[1].maps["edge"], res.blocks[1].maps["edge"].astype(np.float32))
    np.testing.assert_array_equal(back.rollout["corner"], res.rollout["corner"])
    assert back.settings == res.settings and back.blocks[2].query_tokens == res.blocks[2].query_tokens


def test_same_sample_and_seed_give_the_same_numbers(make_s4):
    model = make_s4("hb")
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    a = interaction_maps(model, images, size=64, queries_sampled=16, blocks=((0, 0),))
    b = interaction_maps(model, images, InteractionSettings(size=64, queries_sampled=16, blocks=((0, 0),)))
    assert a.blocks[0].mean_distance_px == b.blocks[0].mean_distance_px
    np.testing.assert_array_equal(a.blocks[0].sample, b.blocks[0].sample)


def test_unknown_mixers_are_skipped_with_their_reason(make_s4):
    model = make_s4("hpx")
    model.stages[1][0].token_mixer = nn.Identity()
    res = interaction_maps(model, torch.randn(1, 3, 64, 64), size=64, queries_sampled=4)
    assert [b.name for b in res.blocks] == ["0.0", "2.0", "3.0"]
    assert res.skipped == [
        {
            "stage": 1,
            "block": 0,
            "mixer": "Identity",
            "reason": "unknown token mixer Identity (no contribution definition)",
        }
    ]
    with pytest.raises(TypeError, match="no setting 'sizes'"):
        interaction_maps(model, torch.randn(1, 3, 64, 64), sizes=64)


def test_a_model_without_mixers_fails_with_one_message():
    with pytest.raises(NoMixersError, match="ResNet"):
        interaction_maps(timm.create_model("resnet18"), torch.randn(1, 3, 64, 64), size=64)


def test_vit_prefix_tokens_are_left_out():
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=64, depth=2).eval()
    res = interaction_maps(vit, torch.randn(1, 3, 64, 64), size=64, queries_sampled=0)
    assert [b.name for b in res.blocks] == ["0.0", "0.1"] and res.blocks[0].grid == (4, 4)
    assert res.blocks[0].queries == 16 and res.notes == ["1 prefix token(s) left out of the maps and distances"]
    # patch centres sit at 16 k + 7.5 px: a distance is at most the grid's diagonal
    assert 0 < res.blocks[1].mean_distance_px <= math.hypot(48, 48)


def test_timm_convformer_runs(make_s4):
    model = load_model("conv_s18=random").model
    res = interaction_maps(model, torch.randn(1, 3, 64, 64), size=64, queries_sampled=4, blocks=((0, 0), (3, 2)))
    assert [b.mixer for b in res.blocks] == ["SepConv", "SepConv"]
    # a 7 x 7 depthwise kernel on a 16 x 16 grid at stride 4: at most 3 tokens each way
    assert res.blocks[0].mean_distance_px <= 3 * math.sqrt(2) * 4


@pytest.mark.slow
def test_bundled_probes_conv_within_reach_hpx_further():
    """On the probe test split: the SepConv probe's interactions stay within its 7 x 7 kernel's
    reach (3 tokens of 4 px each way) at every block, and the trained H_px probe's last block
    reads further than the conv probe's."""
    images = probe_image_tensors(4)
    conv = interaction_maps(load_model("conv_probe").model, images, size=64, queries_sampled=0, maps="centre,corner")
    hpx = interaction_maps(load_model("hpx_probe").model, images, size=64, queries_sampled=0)
    reach = 3 * math.sqrt(2) * 4
    for blk in conv.blocks:
        assert blk.mean_distance_px <= reach
        for query, array in blk.maps.items():  # and no token outside the window is read at all
            row, col = blk.query_tokens[query]
            rows, cols = np.nonzero(array)
            assert np.abs(rows - row).max() <= 3 and np.abs(cols - col).max() <= 3, query
    assert hpx.blocks[-1].mean_distance_px > conv.blocks[-1].mean_distance_px


def test_command_writes_its_files(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["interactions", "-m", "hpx_s4=random", "--size", "64", "--num-images", "1", "--queries-sampled", "8",
         "--blocks", "0.0,3.0", "--maps", "centre,10:50", "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {"interactions.csv", "interactions.json", "interactions_hpx_former_s4.npz"} <= names
    assert {"interactions_distance.png", "interactions_maps.png"} <= names
    record = json.loads((out / "interactions.json").read_text())
    assert record["settings"]["blocks"] == [[0, 0], [3, 0]] and record["settings"]["maps"] == ["centre", "10:50"]
    assert "enabled" in record["fast_paths"] and record["models"][0]["weights"].startswith("random init")
    res = InteractionResult.load(out, "hpx_former_s4")
    # pixel (10, 50): the stage-0 token with the nearest centre (4 r + 1, 4 c + 1) is (2, 12)
    assert res.blocks[0].query_tokens["10:50"] == (2, 12)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--maps", "middle"], "unknown map query 'middle'"),
        (["--blocks", "1-2"], "is not STAGE.BLOCK"),
        (["--blocks", "7.0"], "has no block 7.0"),
    ],
)
def test_bad_options_fail_with_one_line(tmp_path, args, message):
    result = runner.invoke(app, ["interactions", "-m", "hpx_s4=random", "-o", str(tmp_path / "o"), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o" / "interactions.csv").exists()


def test_unusable_or_busy_output_folder_fails_before_the_work(tmp_path):
    import os
    import socket
    import time

    from hpx_analysis.io.output import LOCK_NAME

    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    result = runner.invoke(app, ["interactions", "-m", "hpx_s4=random", "-o", str(blocker)])
    assert result.exit_code == 2 and "output folder" in result.output and blocker.read_text() == "keep me"
    busy = tmp_path / "busy"
    busy.mkdir()
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": "other"}
    (busy / LOCK_NAME).write_text(json.dumps(owner))
    result = runner.invoke(app, ["interactions", "-m", "hpx_s4=random", "-o", str(busy)])
    assert result.exit_code == 2 and "in use" in result.output
    assert not (busy / "interactions.csv").exists()


def test_job_takes_specs_and_labels_repeated_models(tmp_path):
    from hpx_analysis.interactions import run_interactions
    from hpx_analysis.settings import RunContext

    images = probe_image_tensors(1)
    settings = InteractionSettings(size=64, queries_sampled=4, maps=("centre",))
    results = run_interactions(["hpx_probe", "hpx_probe=random"], images, settings, RunContext(out_dir=tmp_path))
    assert [r.label for r in results] == ["hpx_probe-auto", "hpx_probe-random"]
    assert (tmp_path / "interactions_hpx_probe-random.npz").exists()
    record = json.loads((tmp_path / "interactions.json").read_text())
    assert record["settings"] == settings.describe() and set(record["fast_paths"]) >= {"enabled", "ran"}
    assert [m["label"] for m in record["models"]] == ["hpx_probe-auto", "hpx_probe-random"]
