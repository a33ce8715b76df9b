"""``hpx-analyze erf`` and ``kernels``: bad input refused before work with one line, labels
that stay with their runs, no partial state after a failure, lines not cut off a terminal,
and the Python API saying what it expects."""

from __future__ import annotations

import json
import typing

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

import hpx_analysis.erf.compute as erf_compute
from hpx_analysis.cli.main import app
from hpx_analysis.erf import ErfError, ErfSettings, ErfUnit, compute_erf, erf_job, map_grid
from hpx_analysis.erf.labels import RunSpec, assign_labels
from hpx_analysis.io.weights import load_model
from hpx_analysis.probe.analysis import PROBE_SOURCE, probe_image_tensors
from hpx_analysis.settings import RunContext

S4 = ["erf", "--model", "hpx_s4=random", "--device", "cpu"]
FILTER_LAYER = "stages.0.0.token_mixer.long_conv.implicit_filter.0"


def invoke(args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    raw = result.output + (result.stderr if result.stderr_bytes is not None else "")
    return result, " ".join(raw.split()), raw


def make_folder(root, n=3):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def refused(result, text, message):
    assert result.exit_code == 2, text
    assert message in text and "Traceback" not in text
    assert "ERF hpx" not in text  # no progress bar was started


# ----------------------------------------------------------------------------- probe split
def test_probe_split_of_two_probe_models_through_the_cli(tmp_path):
    out = tmp_path / "out"
    args = ["erf", "-m", "hpx_probe=random", "-m", "conv_probe=random", "--images", PROBE_SOURCE]
    result, text, _ = invoke(args + ["--num-images", "2", "--device", "cpu", "--out", out])
    assert result.exit_code == 0, text
    for name in ("hpx_probe", "conv_probe"):
        record = json.loads((out / f"erf_{name}.json").read_text())
        assert record["size"] == 64 and np.load(out / f"erf_{name}.npy").shape == (64, 64)
    assert not list(out.glob("*.partial*"))


def test_probe_split_refuses_another_size_before_work(tmp_path):
    out = tmp_path / "out"
    result, text, _ = invoke(S4 + ["--images", PROBE_SOURCE, "--size", "128", "--out", out])
    refused(result, text, "--size does not apply")
    assert not out.exists()
    # the split is rendered at each model's own size, so even its 64 px is not a --size to give
    result, text, _ = invoke(S4 + ["--images", PROBE_SOURCE, "--size", "64", "--out", out])
    refused(result, text, "--size does not apply")
    result, text, _ = invoke(S4 + ["--images", PROBE_SOURCE, "--num-images", "1", "--out", out])
    assert result.exit_code == 0, text


@pytest.mark.parametrize("error, kept", [(RuntimeError("simulated failure"), 0), (torch.OutOfMemoryError("x"), 1)])
def test_a_failed_map_leaves_no_partial_state(tmp_path, monkeypatch, error, kept):
    """A failure removes the partial state; running out of memory keeps it (a larger device
    can continue it with --resume)."""
    real, calls = erf_compute.contribution_maps, []

    def fails_on_the_second_batch(model, x, settings=None):
        calls.append(1)
        if len(calls) == 2:
            raise error
        return real(model, x, settings)

    monkeypatch.setattr(erf_compute, "contribution_maps", fails_on_the_second_batch)
    out = tmp_path / "out"
    result, text, _ = invoke(S4 + ["--size", "64", "--num-images", "3", "--batch-size", "1", "--out", out])
    assert result.exit_code == 2 and "failed on 64 px inputs" in text and "Traceback" not in text, text
    assert len(calls) == 2 and len(list(out.glob("*.partial*"))) == kept and not list(out.glob("*.npy"))


# ----------------------------------------------------------------------------- units
def test_a_layer_that_ignores_the_input_is_refused_before_work(tmp_path):
    result, text, _ = invoke(S4 + ["--size", "64", "--layer", FILTER_LAYER, "--out", tmp_path / "o"])
    refused(result, text, "does not depend on the input image")
    assert "does not require grad" not in text
    model = load_model("hpx_s4=random").model
    with pytest.raises(ErfError, match="does not depend on the input"):
        compute_erf(model, [torch.zeros(3, 64, 64)], unit=ErfUnit(layer=FILTER_LAYER))
    assert all(p.requires_grad for p in model.parameters())


def test_unknown_layer_lists_the_nearest_names_before_work(tmp_path):
    result, text, _ = invoke(S4 + ["--size", "64", "--layer", "stages.0.0.token_mixr", "--out", tmp_path / "o"])
    refused(result, text, "nearest names: stages.0.0.token_mixer")


def test_out_of_range_stage_gives_the_range_before_work(tmp_path):
    result, text, _ = invoke(S4 + ["--size", "64", "--stage", "0,7", "--out", tmp_path / "o"])
    refused(result, text, "hpx_former_s4 has stages 0-3; stage 7 does not exist")


@pytest.mark.parametrize("extra", [["--stage", "0,0"], ["--stage", "1, 2,1"], ["--layer", "stem", "--layer", "stem"]])
def test_a_repeated_stage_or_layer_is_refused(tmp_path, extra):
    out = tmp_path / "out"
    result, text, _ = invoke(S4 + ["--size", "64"] + extra + ["--out", out])
    refused(result, text, "more than once")
    assert not out.exists()


def test_the_job_refuses_maps_that_would_share_their_files():
    maps = map_grid(ErfSettings(size=64), [64], [ErfUnit(stage=0), ErfUnit(stage=0)])
    with pytest.raises(ErfError, match="asked for twice"):
        erf_job(["hpx_s4=random"], [torch.zeros(3, 64, 64)], maps)


def test_bad_cmap_is_refused_before_work(tmp_path):
    out = tmp_path / "out"
    result, text, _ = invoke(S4 + ["--size", "64", "--cmap", "virdis", "--out", out])
    refused(result, text, "close: viridis")
    assert not out.exists()


# ----------------------------------------------------------------------------- labels
def _checkpoint(path, seed):
    torch.manual_seed(seed)
    model = load_model("hpx_probe=random", seed=seed).model
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)


def test_repeated_spec_keeps_every_label_with_its_run(tmp_path):
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    _checkpoint(snaps / "ep1.safetensors", 1)
    _checkpoint(snaps / "ep2.safetensors", 2)
    out = tmp_path / "out"
    models = ["-m", "hpx_probe=random", "-m", "hpx_probe=random", "-m", f"hpx_probe={snaps}"]
    args = ["erf", *models, "--images", PROBE_SOURCE, "--num-images", "1", "--device", "cpu", "--out", out]
    result, text, _ = invoke(args)
    assert result.exit_code == 0, text
    assert "hpx_probe (random) given 2 times; analysed once" in text
    assert sorted(p.name for p in out.glob("*.npy")) == [f"erf_hpx_probe-{t}.npy" for t in ("ep1", "ep2", "random")]
    image = probe_image_tensors(1)
    for tag in ("ep1", "ep2"):
        record = json.loads((out / f"erf_hpx_probe-{tag}.json").read_text())
        assert record["weights"].endswith(f"{tag}.safetensors"), record["weights"]
        expected = compute_erf(load_model(f"hpx_probe={snaps / tag}.safetensors").model, image).matrix
        np.testing.assert_allclose(np.load(out / f"erf_hpx_probe-{tag}.npy"), expected, rtol=1e-6, atol=0)
    assert json.loads((out / "erf_hpx_probe-random.json").read_text())["weights_kind"] == "random"


def test_labels_need_one_name_per_run():
    with pytest.raises(ValueError, match="one name per run"):
        assign_labels([RunSpec("a=random"), RunSpec("a=random")], ["a"])


# ----------------------------------------------------------------------------- kernels --at
def test_kernels_at_out_of_range_is_refused_with_the_range(tmp_path):
    out = tmp_path / "out"
    result, text, _ = invoke(["kernels", "-m", "hb_s4=random", "--device", "cpu", "--at", "1000,1000", "--out", out])
    assert result.exit_code == 2 and "Traceback" not in text, text
    assert "outside stage 0's 56 x 56 feature map: the row must be in -56..55" in text
    assert not list(out.glob("kernels_*"))
    result, text, _ = invoke(["kernels", "-m", "hb_s4=random", "--device", "cpu", "--at", "10,10", "--out", out])
    assert result.exit_code == 2 and "outside stage 3's 7 x 7 feature map" in text, text
    result, text, _ = invoke(["kernels", "-m", "hb_s4=random", "--device", "cpu", "--at", "-1,0", "--out", out])
    assert result.exit_code == 0, text
    data = np.load(out / "kernels_hb_former_s4.npz")
    assert [int(v) for v in data["stage0_at"]] == [55, 0] and [int(v) for v in data["stage3_at"]] == [6, 0]


def test_kernels_say_when_at_does_not_apply(tmp_path):
    out = tmp_path / "out"
    result, text, _ = invoke(["kernels", "-m", "hpx_s4=random", "--device", "cpu", "--at", "3,4", "--out", out])
    assert result.exit_code == 0, text
    assert "2D kernels (H_px) only; the position (3, 4) applies to H_b's 1D kernels and was not used" in text


# ----------------------------------------------------------------------------- text
def test_metrics_help_does_not_claim_full_adds_the_unit_position():
    from hpx_analysis.cli import erf as erf_cli

    help_text = typing.get_args(erf_cli.MetricsOpt)[1].help
    full_part, _, every_run = help_text.partition("(every run")
    assert "position" not in full_part and "unit's position" in every_run


def test_shortfall_note_only_when_num_images_was_given(tmp_path):
    images = make_folder(tmp_path / "imgs", n=2)
    base = S4 + ["--size", "64", "--images", images]
    # the note would come while the images are listed, before the stage check refuses the run
    result, text, _ = invoke(base + ["--stage", "9", "--out", tmp_path / "a"])
    assert result.exit_code == 2 and "stages 0-3" in text and "note: only" not in text, text
    result, text, _ = invoke(base + ["--num-images", "5", "--out", tmp_path / "b"])
    assert result.exit_code == 0 and "note: only 2 image(s) available, asked for 5" in text, text


def test_long_lines_are_not_cut_when_not_a_terminal(tmp_path):
    out = tmp_path / ("a_folder_name_long_enough_to_pass_eighty_columns_" * 2)
    result, text, raw = invoke(S4 + ["--size", "64", "--num-images", "1", "--out", out])
    assert result.exit_code == 0, text
    assert f"wrote {out}/erf.png, erf_metrics.csv and per-run erf_<label>.npy/.json" in raw
    assert any("ERF hpx_former_s4" in line and "1/1" in line for line in raw.splitlines())


def test_wide_console_off_a_terminal_only(monkeypatch):
    from hpx_analysis.cli.common import NON_TERMINAL_WIDTH, wide_console

    monkeypatch.delenv("COLUMNS", raising=False)
    assert wide_console(stderr=True).width == NON_TERMINAL_WIDTH  # pytest captures stderr: not a terminal
    monkeypatch.setenv("COLUMNS", "100")
    assert wide_console(stderr=True).width == 100


# ----------------------------------------------------------------------------- Python API
def test_compute_erf_unit_must_be_an_erf_unit():
    with pytest.raises(TypeError, match=r"unit must be an ErfUnit \(e.g. ErfUnit\(stage=0\)"):
        compute_erf(torch.nn.Identity(), [torch.zeros(3, 64, 64)], unit="stage0")


@pytest.mark.parametrize(
    "results, error, message",
    [
        ("abc", TypeError, "got str"),
        ([np.ones((4, 4))], TypeError, "item 0 is a ndarray"),
        (3, TypeError, "got int"),
        ({"a": np.ones(3)}, ValueError, "non-empty 2D array"),
        ({"a": "x"}, TypeError, "not a numeric array"),
    ],
)
def test_plot_erf_says_what_it_takes(results, error, message):
    from hpx_analysis.plotting.erf import plot_erf

    with pytest.raises(error, match=message):
        plot_erf(results)


def test_plot_erf_checks_the_colour_map():
    from hpx_analysis.plotting.erf import plot_erf

    with pytest.raises(ValueError, match="unknown matplotlib colour map 'virdis'"):
        plot_erf({"a": np.ones((4, 4))}, cmap="virdis")


def test_erf_job_runs_with_a_checked_layer_unit(tmp_path):
    """The check before work loads each model once and hands it to the computation: the map of
    a layer on the input's path is the same as compute_erf's."""
    unit = ErfUnit(layer="stages.0.0.token_mixer")
    images = [torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(0))]
    got = erf_job(["hpx_s4=random"], images, ErfSettings(size=64, unit=unit), RunContext(out_dir=tmp_path))
    torch.manual_seed(0)
    expected = compute_erf(load_model("hpx_s4=random", seed=0).model, images, size=64, unit=unit).matrix
    np.testing.assert_allclose(got.results[0].matrix, expected, rtol=1e-6, atol=0)
