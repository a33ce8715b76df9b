"""Issue 16, items 7 and 8: typed errors from the Python API, the inputs a notebook user has
at hand, and the messages of the command line (weights modes, refused pickles, skip reasons,
Ctrl-C, duplicate models)."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import hpx_analysis.erf.compute as erf_module
from hpx_analysis.cli.main import app
from hpx_analysis.erf import ErfInputError, ErfModelError, compute_erf
from hpx_analysis.io.images import ImageItem, erf_transform, load_rgb
from hpx_analysis.io.weights import ModelSpec, WeightsError, load_model, parse_model_spec
from tests.test_erf import SmallNet


def invoke(args):
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r, " ".join(r.output.split())


# ----------------------------------------------------------------------------- item 7
@pytest.mark.parametrize(
    "model, images, error, fragment",
    [
        (None, [torch.zeros(3, 16, 16)], TypeError, "torch.nn.Module"),
        ("model", None, TypeError, "iterable"),
        ("model", 42, TypeError, "iterable"),
        ("model", [torch.zeros(3, 0, 0)], TypeError, "must not be empty"),
        ("model", [torch.zeros(3, 16, 16, device="meta")], TypeError, "meta device"),
        ("model", [torch.zeros(3, 16, 16, dtype=torch.uint8)], TypeError, "normalized floats"),
        ("model", [torch.zeros(3, 16, 16, dtype=torch.bool)], TypeError, "normalized floats"),
        ("model", [torch.zeros(3, 16, 16, dtype=torch.int64)], TypeError, "normalized floats"),
        ("model", [np.zeros((16, 16, 3), dtype=np.float32)], TypeError, "uint8"),
        ("model", [{"not": "an image"}], TypeError, "cannot use a dict"),
    ],
)
def test_bad_api_inputs_raise_typed_errors(model, images, error, fragment):
    model = SmallNet() if model == "model" else model
    with pytest.raises(error, match=fragment) as info:
        compute_erf(model, images, size=16)
    assert isinstance(info.value, ErfInputError)


def test_images_too_small_for_the_model_raise_a_model_error(make_s4):
    with pytest.raises(ErfModelError, match="failed on the images") as info:
        compute_erf(make_s4("hpx"), [torch.zeros(3, 1, 1)])
    assert isinstance(info.value, RuntimeError)


def test_paths_pil_images_and_uint8_arrays_equal_the_normalised_tensor(bundled_images):
    path = bundled_images[0]
    expected = compute_erf(SmallNet(), [erf_transform(32)(load_rgb(str(path)))]).matrix
    pil = Image.open(path).convert("RGB")
    for images in ([ImageItem(str(path))], [str(path)], [path], [pil], [np.asarray(pil)], pil, np.asarray(pil)):
        got = compute_erf(SmallNet(), images, size=32)
        np.testing.assert_array_equal(got.matrix, expected)
        assert got.num_images == 1


def test_load_model_checks_model_specs():
    with pytest.raises(WeightsError, match="unknown model"):
        load_model(ModelSpec("not_a_model", "random"))
    with pytest.raises(TypeError, match="NAME\\[=WEIGHTS\\]"):
        load_model(None)


# ----------------------------------------------------------------------------- item 8
def test_a_misspelt_weights_mode_lists_the_modes():
    with pytest.raises(WeightsError) as info:
        parse_model_spec("hpx_s4=randon")
    text = str(info.value)
    assert "randon" in text and "auto, pretrained, random" in text and "not found" not in text


class _Payload:
    def __init__(self, call):
        self.call = call

    def __reduce__(self):
        return (self.call, ("/nonexistent/marker",))


@pytest.mark.parametrize("call, blocked", [(os.system, "posix.system"), (pathlib.Path.touch, "getattr")])
def test_a_refused_pickle_names_the_global_without_advice(tmp_path, call, blocked):
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": _Payload(call)}, str(path))
    with pytest.raises(WeightsError) as info:
        load_model(f"hpx_s4={path}")
    text = str(info.value)
    assert f"it references {blocked}," in text
    assert "weights_only" not in text and "\x1b" not in text and "trusted" not in text and "trust" not in text


def test_skip_reasons_are_not_doubled(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    good = tmp_path / "good.png"
    Image.fromarray(np.full((20, 20, 3), 90, dtype=np.uint8)).save(good)
    result = compute_erf(SmallNet(), [ImageItem(str(bad)), ImageItem(str(good))], size=16)
    (reason,) = [s["reason"] for s in result.skipped]
    assert reason.startswith("unreadable image (") and reason.count("unreadable image") == 1


def test_ctrl_c_says_what_was_saved_and_how_to_resume(tmp_path, monkeypatch):
    real, calls = erf_module.contribution_maps, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(erf_module, "contribution_maps", interrupted)
    out = tmp_path / "out"
    args = ["erf", "-m", "hpx_s4=random", "--size", "64", "--device", "cpu", "--num-images", "3", "--out", out]
    r, text = invoke(args)
    assert r.exit_code == 130, text
    assert "1 image(s) of hpx_former_s4 are saved" in text and "--resume" in text
    assert not (out / ".hpx-analyze.lock").exists()
    monkeypatch.setattr(erf_module, "contribution_maps", real)
    r, text = invoke([*args, "--resume"])
    assert r.exit_code == 0 and "1 image(s) already done" in text, text
    assert json.loads((out / "erf_hpx_former_s4.json").read_text())["num_images"] == 3


def test_aliases_are_resolved_before_duplicates_are_dropped(tmp_path):
    r, text = invoke(["coverage", "-m", "hpx_s4=random", "-m", "hpx_former_s4=random", "--out", tmp_path])
    assert r.exit_code == 0, text
    table = pd.read_csv(tmp_path / "coverage.csv")
    assert table["model"].unique().tolist() == ["hpx_former_s4"]
    assert not table.duplicated(["model", "stage", "block"]).any()
    assert "given 2 times; analysed once" in text
