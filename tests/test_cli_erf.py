"""``hpx-analyze erf`` end to end on a small model and its bad-input cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import hpx_analysis.erf.compute as erf_module
from hpx_analysis.cli.main import app

BASE = ["erf", "--model", "hpx_former_s4=random", "--size", "64", "--device", "cpu"]


def invoke(args):
    result = CliRunner().invoke(app, args)
    text = result.output + (getattr(result, "stderr", "") if result.stderr_bytes is not None else "")
    return result, " ".join(text.split())


def make_folder(root, n=3, seed=0):
    rng = np.random.default_rng(seed)
    (root / "n01440764").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(root / "n01440764" / f"{i}.png")
    return root


def test_cli_writes_every_file(tmp_path):
    out = tmp_path / "out"
    result, text = invoke(
        BASE + ["--model", "hb_s4=random", "--num-images", "2", "--batch-size", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, text
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "erf.pdf",
        "erf.png",
        "erf_hb_former_s4.json",
        "erf_hb_former_s4.npy",
        "erf_hpx_former_s4.json",
        "erf_hpx_former_s4.npy",
        "erf_metrics.csv",
    ]
    matrix = np.load(out / "erf_hpx_former_s4.npy")
    assert matrix.dtype == np.float64 and matrix.shape == (64, 64) and matrix.max() > 0
    meta = json.loads((out / "erf_hpx_former_s4.json").read_text())
    assert meta["model"] == "hpx_former_s4" and meta["weights"].startswith("random init")
    assert meta["size"] == 64 and meta["method"] == "grad" and meta["num_images"] == 2
    assert len(meta["images_used"]) == 2 and meta["images_skipped"] == []
    assert meta["nonfinite_values"] == 0 and meta["device"] == "cpu"
    assert "square_side_t0.5" in meta["metrics"] and "torch" in meta["versions"] and meta["seconds"] > 0
    csv = pd.read_csv(out / "erf_metrics.csv")
    assert list(csv["model"]) == ["hpx_former_s4", "hb_former_s4"]
    assert csv.loc[0, "r90_px"] == meta["metrics"]["r90_px"]
    assert (out / "erf.png").stat().st_size > 1000


def test_cli_matches_library(tmp_path):
    import timm
    import torch

    from hpx_analysis.erf import compute_erf
    from hpx_analysis.io.images import list_images
    from hpx_analysis.io.weights import load_model

    images = make_folder(tmp_path / "imgs", n=2)
    out = tmp_path / "out"
    result, text = invoke(BASE + ["--images", str(images), "--out", str(out), "--seed", "3"])
    assert result.exit_code == 0, text
    loaded = load_model("hpx_former_s4=random", seed=3)
    expected = compute_erf(loaded.model, list_images(images, 50), size=64)
    np.testing.assert_allclose(np.load(out / "erf_hpx_former_s4.npy"), expected.matrix, rtol=1e-6)
    assert timm and torch


@pytest.mark.slow
def test_cli_resume_after_interruption(tmp_path, monkeypatch):
    images = make_folder(tmp_path / "imgs", n=3)
    args = BASE + ["--images", str(images)]
    full, text = invoke(args + ["--out", str(tmp_path / "full")])
    assert full.exit_code == 0, text

    real = erf_module.contribution_maps
    calls = []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(erf_module, "contribution_maps", interrupted)
    out = tmp_path / "out"
    first, _ = invoke(args + ["--out", str(out)])
    assert first.exit_code != 0
    assert not (out / "erf_hpx_former_s4.npy").exists()
    assert list(out.glob("erf_hpx_former_s4.partial.rank0.npz"))

    monkeypatch.setattr(erf_module, "contribution_maps", real)
    counted = []
    monkeypatch.setattr(erf_module, "contribution_maps", lambda *a, **k: counted.append(1) or real(*a, **k))
    second, text = invoke(args + ["--out", str(out), "--resume"])
    assert second.exit_code == 0, text
    assert len(counted) == 2  # one image was done before the interruption
    meta = json.loads((out / "erf_hpx_former_s4.json").read_text())
    assert meta["num_images"] == 3 and len(set(meta["images_used"])) == 3
    assert meta["batch_size"] == 1 and meta["images_per_pass"] == 1  # the CPU default
    np.testing.assert_allclose(
        np.load(out / "erf_hpx_former_s4.npy"), np.load(tmp_path / "full" / "erf_hpx_former_s4.npy"), rtol=1e-12
    )
    assert not list(out.glob("*.partial*"))  # partial state removed after writing


def test_cli_skips_bad_images_and_lists_them(tmp_path):
    images = make_folder(tmp_path / "imgs", n=1)
    (images / "n01440764" / "broken.jpg").write_bytes(b"not an image at all")
    Image.fromarray(np.zeros((20, 20, 4), dtype=np.uint8), mode="RGBA").save(images / "n01440764" / "rgba.png")
    Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)).save(images / "n01440764" / "deep.png")
    out = tmp_path / "out"
    result, text = invoke(BASE + ["--images", str(images), "--out", str(out)])
    assert result.exit_code == 0, text
    meta = json.loads((out / "erf_hpx_former_s4.json").read_text())
    assert meta["num_images"] == 3
    assert [s["key"].endswith("broken.jpg") for s in meta["images_skipped"]] == [True]
    assert "unreadable" in meta["images_skipped"][0]["reason"]
    assert "skipped" in text


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--images", "/nonexistent/folder"], "image folder not found"),
        (["--precision", "bf16"], "needs CUDA"),
        (["--method", "occlusion"], "Invalid value for '--method'"),
        (["--size", "8"], "--size must be at least"),
        (["--model", "no_such_model_xyz"], "unknown model"),
    ],
)
def test_cli_bad_input_is_one_clear_message(tmp_path, extra, message):
    out = tmp_path / "out"
    result, text = invoke(BASE + extra + ["--out", str(out)])
    assert result.exit_code not in (0, None)
    assert message in text
    assert "Traceback" not in text and not isinstance(result.exception, (AssertionError, TypeError))
    assert not (out / "erf.png").exists()


def test_cli_only_unreadable_images(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"garbage")
    result, text = invoke(BASE + ["--images", str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "no image could be used" in text and "Traceback" not in text


def test_plot_erf_shared_scale_and_titles():
    import matplotlib.pyplot as plt

    from hpx_analysis.erf import ErfResult
    from hpx_analysis.plotting.erf import plot_erf

    a = np.zeros((9, 9))
    a[4, 4] = 99.0
    res = ErfResult(
        matrix=a,
        used=["x"],
        skipped=[],
        nonfinite_values=0,
        seconds=1.0,
        method="grad",
        precision="fp32",
        input_size=(9, 9),
        device="cpu",
        settings={"model": "hpx_former_s4", "weights": "random init (seed 0)"},
    )
    fig = plot_erf([res, res])
    axes = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in axes] == ["hpx_former_s4\nrandom init (seed 0)"] * 2
    assert all(ax.images[0].norm.vmin == 0 and ax.images[0].norm.vmax == 1 for ax in axes)
    assert axes[0].images[0].get_array()[4, 4] == pytest.approx(1.0)
    plt.close(fig)
    fig, given = plt.subplots(1, 3)
    out = plot_erf({"a": a, "b": 2 * a}, axes=given, scale="log")
    assert out is fig and given[0].images[0].norm.vmin == pytest.approx(1e-4)
    plt.close(fig)
    with pytest.raises(ValueError):
        plot_erf({})


def test_cli_grad_checkpointing_gives_the_same_matrix(tmp_path):
    plain, ckpt = tmp_path / "plain", tmp_path / "ckpt"
    for out, extra in ((plain, []), (ckpt, ["--grad-checkpointing"])):
        result, text = invoke(
            ["erf", "--size", "64", "--model", "hpx_s4=random", "--num-images", "1", "--out", str(out)] + extra
        )
        assert result.exit_code == 0, text
    np.testing.assert_allclose(
        np.load(ckpt / "erf_hpx_former_s4.npy"), np.load(plain / "erf_hpx_former_s4.npy"), rtol=1e-5, atol=1e-12
    )
    assert json.loads((ckpt / "erf_hpx_former_s4.json").read_text())["grad_checkpointing"] is True
