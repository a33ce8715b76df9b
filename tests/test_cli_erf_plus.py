"""``hpx-analyze erf`` with the research options: stages, run labels and checkpoint series,
the BMVC protocol, full metrics, scales and several sizes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from hpx_analysis.erf import ErfComparison, compute_erf
from hpx_analysis.erf.unit import ErfUnit
from hpx_analysis.io.images import erf_transform, list_images

from .test_cli_erf import invoke

S4 = ["erf", "--size", "64", "--device", "cpu", "--num-images", "1"]


def test_cli_default_record_measures_around_the_unit(tmp_path):
    out = tmp_path / "out"
    result, text = invoke(S4 + ["--model", "hpx_s4=random", "--out", str(out)])
    assert result.exit_code == 0, text
    record = json.loads((out / "erf_hpx_former_s4.json").read_text())
    assert not {"label", "unit", "trf", "run_label", "checkpoint"} & set(record)
    # by hand: unit 1 of the 2 x 2 last map is unit 8 of the stem's 16 x 16 map (three stride-2
    # convs, kernel 3, padding 1, keep the centre index doubled), whose 7 x 7 stride-4 kernel
    # with padding 2 is centred on pixel 4 * 8 - 2 + 3 = 33
    assert record["unit_position"]["index"] == [1, 1]
    assert record["unit_position"]["centre_px"] == [33.0, 33.0]
    table = pd.read_csv(out / "erf_metrics.csv")
    assert list(table.columns)[:2] == ["model", "weights"]
    m = np.load(out / "erf_hpx_former_s4.npy")
    rows = (m.sum(1) * np.arange(64)).sum() / m.sum()
    assert table["com_offset_row_px"].iloc[0] == pytest.approx(rows - 33.0)


@pytest.mark.slow
def test_cli_stages_sizes_and_full_metrics(tmp_path):
    out = tmp_path / "out"
    args = ["--model", "hpx_s4=random", "--stage", "0,3", "--size", "64,96", "--save-per-image"]
    result, text = invoke(S4[:1] + args + ["--device", "cpu", "--num-images", "1", "--out", str(out)])
    assert result.exit_code == 0, text
    names = {p.name for p in out.iterdir()}
    for stage in (0, 3):
        for size in (64, 96):
            assert f"erf_hpx_former_s4_s{stage}_{size}px.npy" in names
    assert {"erf.png", "erf.pdf", "erf_sizes.png", "erf_metrics.csv"} <= names
    assert {"erf_hpx_former_s4_s3_96px_std.npy", "erf_hpx_former_s4_s3_96px_per_image.npz"} <= names
    table = pd.read_csv(out / "erf_metrics.csv")
    assert list(table["stage"]) == [0, 3, 0, 3] and list(table["size"]) == [64, 64, 96, 96]
    assert {"gauss_sigma_x_px", "erf_trf_ratio", "centre_row_px", "degenerate"} <= set(table.columns)
    record = json.loads((out / "erf_hpx_former_s4_s3_96px.json").read_text())
    assert record["unit"] == {"stage": 3} and record["unit_position"]["centre_px"] == [33.0, 33.0]
    assert record["trf"]["pixels"] > 0
    # the stage-3 map at 96 px is the library's map of that unit on the same image
    torch.manual_seed(0)
    model = timm.create_model("hpx_former_s4").eval()
    image = erf_transform(96)(Image.open(list_images(None, 1)[0].path).convert("RGB"))
    ref = compute_erf(model, [image], unit=ErfUnit(stage=3)).matrix
    np.testing.assert_allclose(np.load(out / "erf_hpx_former_s4_s3_96px.npy"), ref, rtol=1e-4, atol=1e-6 * ref.max())
    back = ErfComparison.load(out)
    assert [r.label for r in back.results][:2] == ["hpx_former_s4_s0_64px", "hpx_former_s4_s3_64px"]


@pytest.mark.slow
def test_cli_checkpoint_series_and_repeated_models(tmp_path):
    snaps = tmp_path / "snapshots"
    snaps.mkdir()
    for epoch in (1, 2, 10):
        torch.manual_seed(epoch)
        model = timm.create_model("hpx_former_s4")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, snaps / f"epoch{epoch}.safetensors")
    out = tmp_path / "out"
    args = ["--model", f"hpx_s4={snaps}/*.safetensors", "--model", "hpx_s4=random", "--protocol", "bmvc"]
    result, text = invoke(S4 + args + ["--out", str(out)])
    assert result.exit_code == 0, text
    labels = ["hpx_former_s4-epoch1", "hpx_former_s4-epoch2", "hpx_former_s4-epoch10", "hpx_former_s4-random"]
    for label in labels:
        matrix = np.load(out / f"erf_{label}.npy")
        assert matrix.sum() == pytest.approx(1.0)  # bmvc: normalised
    assert (out / "erf_series.png").is_file()
    table = pd.read_csv(out / "erf_metrics.csv")
    assert list(table["label"]) == labels and list(table["checkpoint"].iloc[:3]) == ["epoch1", "epoch2", "epoch10"]
    assert set(table["protocol"]) == {"bmvc"}
    first = np.load(out / "erf_hpx_former_s4-epoch1.npy")
    assert not np.allclose(first, np.load(out / "erf_hpx_former_s4-epoch10.npy"))  # nothing overwritten


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--stage", "0", "--layer", "stages.0"], "not both"),
        (["--scale", "power:x"], "--scale must be"),
        (["--layer", "nowhere"], "no module named"),
        (["--stage", "a"], "--stage expects"),
        (["--size", "64,16"], "--size must be at least"),
        (["--overlay", "/nonexistent.png"], "--overlay image not found"),
        (["--model", "hpx_s4=/nonexistent/*.pth"], "no checkpoint"),
    ],
)
def test_cli_new_options_bad_input(tmp_path, extra, message):
    result, text = invoke(S4 + ["--model", "hpx_s4=random"] + extra + ["--out", str(tmp_path / "out")])
    assert result.exit_code == 2, text
    assert message in text and "Traceback" not in text


def test_cli_probe_split_is_read_at_its_own_64_px(tmp_path):
    from hpx_analysis.probe.analysis import PROBE_IMAGES_LABEL, PROBE_SOURCE

    out = tmp_path / "out"
    result, text = invoke(["erf", "--model", "hpx_s4=random", "--images", PROBE_SOURCE, "--num-images", "1"]
                          + ["--device", "cpu", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, text
    record = json.loads((out / "erf_hpx_former_s4.json").read_text())
    # the size of the record and of the unit's position is the tensors' 64 px, not the default 1024
    assert record["size"] == 64 and record["input_size"] == [64, 64]
    assert record["images_source"] == PROBE_IMAGES_LABEL and record["unit_position"]["centre_px"] == [33.0, 33.0]
