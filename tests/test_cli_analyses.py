"""``hpx-analyze kernels``, ``coverage`` and ``truncation`` end to end on S4 models."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from hpx_analysis.cli.main import app

runner = CliRunner()


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args])
    r.text = " ".join(r.output.split())  # rich wraps long lines
    return r


def test_kernels_writes_npz_and_png(tmp_path):
    r = invoke(
        "kernels", "-m", "hpx_s4=random", "-m", "hb_s4=random", "--at", "0,-1", "--channel", "3", "--out", tmp_path
    )
    assert r.exit_code == 0, r.output
    for name in ("hpx_former_s4", "hb_former_s4"):
        assert (tmp_path / f"kernels_{name}.png").stat().st_size > 0
    hpx = np.load(tmp_path / "kernels_hpx_former_s4.npz")
    assert hpx["stage0_mean"].shape == (111, 111) and hpx["stage3_picked"].shape == (13, 13)
    assert int(hpx["stage2_channel"]) == 3 and "random init" in str(hpx["weights"])
    assert "point-mirrored" in str(hpx["stage0_orientation"])
    hb = np.load(tmp_path / "kernels_hb_former_s4.npz")
    assert hb["stage0_mean"].shape == (56, 56) and hb["stage3_mean"].shape == (7, 7)
    assert hb["stage3_at"].tolist() == [0, 6] and hb["stage0_at"].tolist() == [0, 55]
    assert hb["stage1_kernel1d_mean"].shape == (2 * 28 * 28 - 1,)


def test_kernels_bad_input_is_one_message(tmp_path):
    r = invoke("kernels", "-m", "hpx_s4=random", "--block", "2", "--out", tmp_path)
    assert r.exit_code == 2 and "block 2 does not exist" in r.text and "Traceback" not in r.text
    r = invoke("kernels", "-m", "hpx_s4=random", "--at", "1", "--out", tmp_path)
    assert r.exit_code == 2 and "row,col" in r.text


def test_kernels_model_without_long_kernels(tmp_path):
    r = invoke("kernels", "-m", "conv_s18=random", "--out", tmp_path)
    assert r.exit_code == 2 and "no long-convolution" in r.text
    assert not list(tmp_path.glob("kernels_*"))


def test_coverage_files(tmp_path):
    r = invoke("coverage", "-m", "hpx_s4=random", "-m", "hb_s4=random", "--diameter", "area", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    df = pd.read_csv(tmp_path / "coverage.csv")
    assert list(df.columns[:5]) == ["model", "stage", "block", "mixer", "coverage"]
    assert set(df.model) == {"hpx_former_s4", "hb_former_s4"} and set(df.mixer) == {"H_px", "H_b"}
    ch = pd.read_csv(tmp_path / "coverage_channels.csv")
    first = ch[(ch.model == "hpx_former_s4") & (ch.stage == 0)].coverage.mean()
    assert first == pytest.approx(df[(df.model == "hpx_former_s4") & (df.stage == 0)].coverage.iloc[0])
    assert (tmp_path / "coverage.png").stat().st_size > 0


def test_coverage_help_and_bad_reading(tmp_path):
    r = invoke("coverage", "--help")
    assert r.exit_code == 0 and "paper's reading" in r.text
    r = invoke("coverage", "-m", "hpx_s4=random", "--diameter", "chord", "--out", tmp_path)
    assert r.exit_code == 2 and "Invalid value for '--diameter'" in r.text and "Traceback" not in r.text
    assert "axis" in r.text and "area" in r.text


def test_truncation_bundled_images(tmp_path):
    r = invoke(
        "truncation",
        "-m",
        "hpx_s4=random",
        "--size",
        64,
        "--num-images",
        2,
        "--rel-sizes",
        "0.3,2",
        "--stages",
        "2,3",
        "--batch-size",
        2,
        "--out",
        tmp_path,
    )
    assert r.exit_code == 0, r.output
    assert "no accuracy" in r.text
    df = pd.read_csv(tmp_path / "truncation.csv")
    assert set(df.metric) == {"agreement", "kl"} and set(df.stage) == {-1, 2, 3}
    full = df[(df.rel_size == 2.0) & (df.metric == "agreement")]
    assert (full.value == 100.0).all()
    meta = json.loads((tmp_path / "truncation.json").read_text())
    assert meta["models"][0]["images_evaluated"] == 2 and meta["settings"]["labels"] is False
    assert (tmp_path / "truncation.png").stat().st_size > 0


def _image_tree(root, folders):
    rng = np.random.default_rng(0)
    for f in folders:
        (root / f).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (50, 60, 3), dtype=np.uint8)).save(root / f / "a.png")


def test_truncation_synset_folders_give_accuracy(tmp_path):
    _image_tree(tmp_path / "val", ["n01440764", "n01443537"])
    r = invoke(
        "truncation",
        "-m",
        "hpx_s4=random",
        "--images",
        tmp_path / "val",
        "--size",
        64,
        "--rel-sizes",
        "0.5",
        "--stages",
        "3",
        "--crop-pct",
        "0.9",
        "--out",
        tmp_path / "o",
    )
    assert r.exit_code == 0, r.output
    df = pd.read_csv(tmp_path / "o" / "truncation.csv")
    assert {"top1", "top5", "agreement", "kl"} == set(df.metric)


def test_truncation_bad_input(tmp_path):
    r = invoke("truncation", "-m", "hpx_s4=random", "--images", tmp_path / "missing", "--out", tmp_path)
    assert r.exit_code == 2 and "not found" in r.text and "Traceback" not in r.text
    r = invoke("truncation", "-m", "conv_s18=random", "--size", 64, "--num-images", 1, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "no long-convolution" in r.text
    r = invoke("truncation", "-m", "hpx_s4=random", "--rel-sizes", "0.5,big", "--out", tmp_path)
    assert r.exit_code == 2 and "--rel-sizes" in r.text
