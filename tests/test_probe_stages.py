"""The two-stage probes in the analyses: probe images at each model's own size (ERF,
interactions), the per-stage truncation figure and the report's two-stage section."""

from __future__ import annotations

import json

import numpy as np
import timm
from typer.testing import CliRunner

from hpx_analysis.cli.main import app
from hpx_analysis.probe.analysis import ProbeImages, images_for_model


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
