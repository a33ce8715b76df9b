"""The ERF's settings object and its two entry points: compute_erf with settings or overrides,
the resume guard, the record's settings and fast paths, and the job's files for the
command line's, the report's and the probe section's inputs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from hpx_analysis.erf import (
    ErfError,
    ErfSettings,
    ErfUnit,
    compute_erf,
    erf_job,
    map_grid,
)
from hpx_analysis.erf.job import erf_models
from hpx_analysis.erf.metrics import R50_PX, R90_PX, erf_metrics
from hpx_analysis.io.weights import load_model
from hpx_analysis.models.fast import fast_path_record
from hpx_analysis.settings import RunContext
from tests.test_erf import ConvFeatures, SmallNet, images


def test_settings_and_overrides_give_the_same_matrix():
    xs = images(3, size=12, seed=4)
    by_settings = compute_erf(SmallNet(), xs, ErfSettings(batch_size=2, method="saliency"))
    by_overrides = compute_erf(SmallNet(), xs, batch_size=2, method="saliency")
    mixed = compute_erf(SmallNet(), xs, ErfSettings(batch_size=3), method="saliency", batch_size=2)
    np.testing.assert_array_equal(by_settings.matrix, by_overrides.matrix)
    np.testing.assert_array_equal(by_settings.matrix, mixed.matrix)
    # and saliency is |gradient| summed over colours, written out with autograd
    model = SmallNet().eval()
    x = torch.stack(xs).requires_grad_(True)
    fmap = model.forward_features(x)
    h, w = fmap.shape[-2:]
    torch.relu(fmap[:, :, h // 2, w // 2]).sum().backward()
    expected = x.grad.abs().sum(1).mean(0).numpy()
    np.testing.assert_allclose(by_settings.matrix, expected, rtol=1e-12)


def test_an_unknown_override_names_the_settings():
    with pytest.raises(TypeError, match="no setting 'sizes'") as info:
        compute_erf(ConvFeatures(), images(1), sizes=64)
    for name in ("size", "method", "precision", "ig_steps", "unit", "batch_size"):
        assert name in str(info.value)
    with pytest.raises(TypeError, match="settings must be a ErfSettings"):
        compute_erf(ConvFeatures(), images(1), {"size": 64})


def test_bad_settings_are_refused_when_made():
    with pytest.raises(ErfError, match="unknown ERF method"):
        ErfSettings(method="occlusion")
    with pytest.raises(ErfError, match="batch size must be at least 1"):
        ErfSettings().replace(batch_size=0)
    with pytest.raises(ErfError, match="ig_steps"):
        ErfSettings(ig_steps=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ErfSettings().size = 3  # type: ignore[misc]


def test_resume_guard_is_the_record_the_states_were_written_with():
    plain = ErfSettings(size=64, images="bundled scikit-image photographs", batch_size=4)
    # the guard as it was assembled by hand before: ig_steps only for integrated gradients,
    # the unit's non-default choices, the preprocessing only when not squash
    assert plain.resume_guard("m", "random init (seed 0)") == {
        "model": "m",
        "weights": "random init (seed 0)",
        "size": 64,
        "method": "grad",
        "precision": "fp32",
        "ig_steps": None,
        "images": "bundled scikit-image photographs",
    }
    ig = plain.replace(method="integrated_gradients", ig_steps=8, unit=ErfUnit(stage=2), preprocess="timm-eval")
    guard = ig.resume_guard("m", "w")
    assert guard["ig_steps"] == 8 and guard["stage"] == 2 and guard["preprocess"] == "timm-eval"
    # what does not change the matrix does not guard it
    assert plain.replace(batch_size=1, compile_blocks=True).resume_guard("m", "w") == plain.resume_guard("m", "w")
    record = ig.describe()
    assert json.loads(json.dumps(record)) == record
    assert record["unit"] == {"stage": 2} and record["batch_size"] == 4


def test_map_grid_is_sizes_outermost():
    grid = map_grid(ErfSettings(), [64, 96], [ErfUnit(stage=0), ErfUnit(stage=3)])
    assert [(s.size, s.unit.stage) for s in grid] == [(64, 0), (64, 3), (96, 0), (96, 3)]


def test_job_writes_the_command_files_with_settings_and_fast_paths(tmp_path):
    """The report's call: model specs, image files, one map; the same files the command wrote."""
    from hpx_analysis.io.images import list_images

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    from PIL import Image

    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    items = list_images(folder, 2)
    settings = ErfSettings(size=64, images=str(folder))
    out = tmp_path / "out"
    comparison = erf_job(["hpx_s4=random"], items, settings, RunContext(out_dir=out, seed=3, command="test"))
    assert sorted(p.name for p in out.iterdir()) == [
        "erf.pdf",
        "erf.png",
        "erf_hpx_former_s4.json",
        "erf_hpx_former_s4.npy",
        "erf_metrics.csv",
    ]
    loaded = load_model("hpx_s4=random", seed=3)
    expected = compute_erf(loaded.model, items, size=64).matrix
    np.testing.assert_allclose(np.load(out / "erf_hpx_former_s4.npy"), expected, rtol=1e-6)
    record = json.loads((out / "erf_hpx_former_s4.json").read_text())
    assert record["erf_settings"] == settings.replace(batch_size=1).describe()
    assert record["fast_paths"].keys() == fast_path_record().keys()
    assert record["settings"] == settings.resume_guard("hpx_former_s4", "random init (seed 3)")
    assert record["size"] == 64 and record["batch_size"] == 1 and record["seed"] == 3 and record["command"] == "test"
    assert record["images_source"] == str(folder) and "run_label" not in record and "label" not in record
    table = pd.read_csv(out / "erf_metrics.csv")
    metrics = erf_metrics(expected, centre=record["unit_position"]["centre_px"])
    assert table[R90_PX].iloc[0] == metrics[R90_PX] and table[R50_PX].iloc[0] == metrics[R50_PX]
    assert comparison.results[0].label == "hpx_former_s4" and not list(out.glob("*.partial*"))


def test_job_takes_loaded_models_and_tensors_of_the_probe_split(tmp_path):
    """The probe section's call: loaded models, normalised 64 px tensors, its images label,
    two maps (a size suffix on every label)."""
    loaded = load_model("hpx_s4=random", seed=0)
    xs = [torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    base = ErfSettings(images="probe test split")
    maps = map_grid(base, [64], [ErfUnit(), ErfUnit(stage=3)])
    out = tmp_path / "out"
    comparison = erf_job([loaded], xs, maps, RunContext(out_dir=out))
    names = {p.name for p in out.iterdir()}
    assert {"erf_hpx_former_s4.npy", "erf_hpx_former_s4_s3.npy", "erf.png", "erf_metrics.csv"} <= names
    direct = compute_erf(loaded.model, xs, unit=ErfUnit(stage=3)).matrix
    np.testing.assert_allclose(comparison.results[1].matrix, direct, rtol=1e-6)
    record = json.loads((out / "erf_hpx_former_s4_s3.json").read_text())
    assert record["images_source"] == "probe test split" and record["unit"] == {"stage": 3}
    assert record["run_label"] == "hpx_former_s4" and record["images_used"] == ["tensor:0", "tensor:1"]


def test_job_without_an_output_folder_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loaded = load_model("hpx_s4=random", seed=0)
    comparison = erf_job([loaded], [torch.zeros(3, 64, 64)], ErfSettings(), RunContext())
    assert len(comparison.results) == 1 and list(tmp_path.iterdir()) == []


def test_models_of_a_job_are_labelled_like_the_command_line():
    entries = erf_models(["hpx_s4=random", "hpx_former_s4=auto", "hb_s4"])
    assert [e.label for e in entries] == ["hpx_former_s4-random", "hpx_former_s4-auto", "hb_former_s4"]
    with pytest.raises(TypeError, match="an ERF model is"):
        erf_models([3])
