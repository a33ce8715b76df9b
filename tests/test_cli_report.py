"""``hpx-analyze report``: weights choice and bad input (the full run is tests/test_figures_current.py)."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from hpx_analysis.cli.main import app
from hpx_analysis.io.weights import WeightsError
from hpx_analysis.report import FULL, QUICK, UnusedModelWeightsError, markdown_table, weights_chooser

runner = CliRunner()


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args])
    r.text = " ".join(r.output.split())
    return r


def test_weights_chooser_defaults_and_overrides(tmp_path):
    assert QUICK.weights == "random" and FULL.weights == "auto"
    choose = weights_chooser("random")
    assert choose("hpx_s18") == "hpx_s18=random"
    ckpt = tmp_path / "h.safetensors"
    choose = weights_chooser("auto", ["pretrained", f"hpx_former_s18={ckpt}", "conv_s18=random"])
    assert choose("hpx_s18") == f"hpx_s18={ckpt}"  # canonical name or alias both match
    assert choose("conv_s18") == "conv_s18=random"
    assert choose("hb_s18") == "hb_s18=pretrained"


def test_weights_chooser_rejects_unknown_and_unused_models():
    with pytest.raises(WeightsError, match="unknown model"):
        weights_chooser("random", ["no_such_model_xyz=random"])
    with pytest.raises(UnusedModelWeightsError, match="does not use"):
        weights_chooser("random", ["resnet18=random"])


@pytest.mark.parametrize(
    "args, message",
    [
        (("--images", "/no/such/folder"), "image folder not found"),
        (("--model-weights", "no_such_model_xyz=random"), "unknown model"),
        (("--model-weights", "resnet18=random"), "does not use"),
        (("--device", "tpu"), "Invalid value for '--device'"),
    ],
)
def test_report_bad_input_is_one_message_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "rep"
    r = invoke("report", "--quick", "--out", out, *args)
    assert r.exit_code == 2, r.output
    assert message in r.text and "Traceback" not in r.text
    assert not out.exists()


def test_markdown_table():
    df = pd.DataFrame({"a": ["x|y", "z"], "b": [0.000123456, float("nan")], "c": [1, 2]})
    assert markdown_table(df).splitlines() == [
        "| a | b | c |",
        "| --- | --- | --- |",
        "| x\\|y | 1.235e-04 | 1 |",
        "| z |  | 2 |",
    ]
