"""The ERF of any stage or layer, the BMVC 2023 protocol, the unit's position and theoretical
receptive field, the Gaussian fit, run labels and plot scales, each against an independent
computation written out here."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch import nn

from hpx_analysis.erf import compute_erf
from hpx_analysis.erf.geometry import theoretical_rf, unit_position
from hpx_analysis.erf.labels import assign_labels, expand_model_args, weights_tag
from hpx_analysis.erf.metrics import (
    centre_of_mass_offset,
    degenerate_warning,
    erf_metrics,
    gaussian_fit,
    mass_radius,
)
from hpx_analysis.erf.unit import ErfUnit, centre_index


def _inputs(n=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, size, size, generator=g) for _ in range(n)]


def _grad_sum(model, images, scalar, per_image):
    """Plain autograd, one image at a time: ``per_image(d scalar(x) / d x)`` summed (float64)."""
    total = 0
    for img in images:
        x = img[None].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(scalar(model, x), x)
        total = total + per_image(g[0]).double()
    return total.numpy()


# ----------------------------------------------------------------------------- item 1: stages, layers
def test_stage_maps_match_forward_intermediates_with_plain_autograd(make_s4):
    model = make_s4("hpx")
    images = _inputs(1)
    for k in (0, 3):  # the first and the last stage (each ~1.5 s on 2 cores)

        def scalar(m, x, k=k):
            f = m.forward_intermediates(x, indices=[k], intermediates_only=True)[0]
            h, w = f.shape[-2:]
            return torch.relu(f[0, :, h // 2, w // 2]).sum()

        ref = _grad_sum(model, images, scalar, lambda g: torch.relu(g).sum(0)) / len(images)
        got = compute_erf(model, images, unit=ErfUnit(stage=k)).matrix
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * ref.max())
    assert not model.training and all(p.requires_grad for p in model.parameters())


def test_layer_output_channels_last_equals_its_stage(make_s4):
    model = make_s4("hb")
    images = _inputs(1)
    by_stage = compute_erf(model, images, unit=ErfUnit(stage=1)).matrix
    by_layer = compute_erf(model, images, unit=ErfUnit(layer="stages.1")).matrix  # (B, H, W, C) output
    np.testing.assert_allclose(by_layer, by_stage, rtol=1e-5, atol=1e-7 * by_stage.max())


def test_layer_of_a_vit_drops_the_prefix_tokens():
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=0).eval()
    images = _inputs(1)

    def scalar(m, x):
        captured = {}
        handle = m.blocks[0].register_forward_hook(lambda mod, i, o: captured.setdefault("t", o))
        m(x)
        handle.remove()
        grid = captured["t"][0, 1:].reshape(4, 4, -1)  # one class token, 4 x 4 patches
        return torch.relu(grid[2, 2]).sum()

    ref = _grad_sum(vit, images, scalar, lambda g: torch.relu(g).sum(0))
    got = compute_erf(vit, images, unit=ErfUnit(layer="blocks.0")).matrix
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * ref.max())


def test_unknown_layer_and_stage_are_clear_errors(make_s4):
    from hpx_analysis.erf import ErfError

    model = make_s4("hpx")
    with pytest.raises(ErfError, match="no module named"):
        compute_erf(model, _inputs(1), unit=ErfUnit(layer="stages.9"))
    with pytest.raises(ErfError, match="stage or a layer"):
        ErfUnit(stage=1, layer="stages.1")


# ----------------------------------------------------------------------------- item 3: bmvc protocol
def _bmvc_reference(model, images, tokens: bool):
    """Kim et al.'s definition written out: channel mean at the centre (upper-left of the
    central 2 x 2 for even token grids), no ReLU; gradient averaged over colours, clamped at
    0; summed over images; normalised to sum 1."""

    def scalar(m, x):
        f = m.forward_features(x)
        if tokens:
            n = f.shape[1] - m.num_prefix_tokens
            side = int(round(n**0.5))
            f = f[:, m.num_prefix_tokens :].reshape(1, side, side, -1).permute(0, 3, 1, 2)
            i = j = (side - 1) // 2
        else:
            i, j = f.shape[2] // 2, f.shape[3] // 2
        return f[0, :, i, j].mean()

    total = _grad_sum(model, images, scalar, lambda g: torch.clamp(g.mean(0), min=0))
    return total / total.sum()


def test_bmvc_protocol_on_a_conv_map(make_s4):
    model = make_s4("hpx")
    images = _inputs()
    got = compute_erf(model, images, unit=ErfUnit(protocol="bmvc")).matrix
    ref = _bmvc_reference(model, images, tokens=False)
    assert got.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * ref.max())


def test_bmvc_protocol_on_an_even_token_grid_with_timm_eval_preprocessing(tmp_path):
    from timm.data import create_transform, resolve_data_config

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=0).eval()
    # at init the final norm's weight is all ones, so the channel mean of its output is a
    # constant and its gradient float32 rounding noise: random weights make it a real signal
    nn.init.normal_(vit.norm.weight)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(paths[-1])
    # --size overrides the config's 224
    got = compute_erf(vit, [str(p) for p in paths], unit=ErfUnit(protocol="bmvc"), preprocess="timm-eval", size=64)
    assert got.input_size == (64, 64)
    # the model's data config applied directly with timm
    config = resolve_data_config({}, model=vit)
    config["input_size"] = (3, 64, 64)
    direct = create_transform(**config, is_training=False)
    images = [direct(Image.open(p).convert("RGB")) for p in paths]
    ref = _bmvc_reference(vit, images, tokens=True)
    np.testing.assert_allclose(got.matrix, ref, rtol=1e-4, atol=1e-5 * ref.max())


# ----------------------------------------------------------------------------- item 4: where the centre is
def test_centre_index_rules():
    assert centre_index(4, 5) == (2, 2)
    assert centre_index(4, 5, "before") == (1, 2)
    assert ErfUnit(protocol="bmvc").centre(4, 4, tokens=True) == (1, 1)
    assert ErfUnit(protocol="bmvc").centre(4, 4, tokens=False) == (2, 2)
    assert ErfUnit(protocol="bmvc", even="after").centre(4, 4, tokens=True) == (2, 2)


class _Stack(nn.Module):
    """Three convolutions: k3 p1, k3 s2 p1, k5 p2 (no nonlinearity)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, 2, 1), nn.Conv2d(4, 4, 5, padding=2)
        )

    def forward_features(self, x):
        return self.body(x)


def test_position_and_trf_of_a_hand_built_conv_stack():
    torch.manual_seed(0)
    stack = _Stack()
    pos = unit_position(stack, 32)
    # unit 8 of the 16-wide map; the strided conv puts index i at 2i - 1 + 1
    assert pos["index"] == [8, 8] and pos["centre_px"] == [16.0, 16.0] and pos["rule"] == "layer chain"
    trf = theoretical_rf(stack, 32)
    # k5 on the stride-2 grid: +-2 -> +-4 px, the strided k3: +-1, the first k3: +-1 -> 16 +- 6
    expected = np.zeros((32, 32), dtype=bool)
    expected[10:23, 10:23] = True
    assert np.array_equal(trf["mask"], expected) and trf["pixels"] == 169
    assert trf["rows"] == [10, 22] and trf["cols"] == [10, 22]


def test_resnet_centre_unit_sits_off_the_image_centre():
    resnet = timm.create_model("resnet18", num_classes=0)
    assert unit_position(resnet, 224)["centre_px"] == [96.0, 96.0]  # 16 px from 112


def test_metrics_around_the_unit_position():
    m = np.zeros((40, 40))
    m[10, 20] = 1.0
    assert centre_of_mass_offset(m, centre=(10, 20)) == (0.0, 0.0)
    assert centre_of_mass_offset(m) == (-10.0, 0.0)
    assert mass_radius(m, 0.5, centre=(10, 20)) == 0
    full = erf_metrics(m, centre=(10, 20), full=True, trf_pixels=100)
    assert full["com_offset_px"] == 0.0 and full["centre_row_px"] == 10.0
    assert full["erf90_area_px"] == 1 and full["erf_trf_ratio"] == pytest.approx(0.01)
    assert full["degenerate"] is True
    assert "degenerate" in degenerate_warning(full, "x")
    assert set(erf_metrics(m)) < set(full)  # the standard metrics are unchanged by default


# ----------------------------------------------------------------------------- item 5: Gaussian fit
def test_gaussian_fit_recovers_a_planted_gaussian():
    yy, xx = np.mgrid[0:64, 0:80].astype(float)
    sx, sy, rho, my, mx = 7.0, 4.0, 0.35, 30.0, 44.0
    dy, dx = (yy - my) / sy, (xx - mx) / sx
    m = 3.0 * np.exp(-((dy**2 - 2 * rho * dy * dx + dx**2) / (1 - rho**2)) / 2)
    fit = gaussian_fit(m)
    assert fit["sigma_x"] == pytest.approx(sx, rel=1e-3) and fit["sigma_y"] == pytest.approx(sy, rel=1e-3)
    assert fit["rho"] == pytest.approx(rho, abs=1e-3) and fit["r2"] > 0.9999
    assert (fit["mu_row"], fit["mu_col"]) == (pytest.approx(my, abs=1e-3), pytest.approx(mx, abs=1e-3))
    noisy = m + np.random.default_rng(0).uniform(0, 0.3, m.shape)
    assert 0.8 < gaussian_fit(noisy)["r2"] < 0.9999


# ----------------------------------------------------------------------------- item 2: run labels
def test_labels_and_checkpoint_globs(tmp_path):
    for name in ("ep10.safetensors", "ep2.safetensors", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    runs = expand_model_args(["hpx_s4=random", f"hpx_s4={tmp_path}/*.safetensors", "hb_s4"])
    assert [r.checkpoint for r in runs] == [None, "ep2", "ep10", None]
    assign_labels(runs, ["hpx_former_s4", "hpx_former_s4", "hpx_former_s4", "hb_former_s4"])
    assert [r.label for r in runs] == [
        "hpx_former_s4-random",
        "hpx_former_s4-ep2",
        "hpx_former_s4-ep10",
        "hb_former_s4",
    ]
    assert [r.checkpoint for r in expand_model_args([f"m={tmp_path}"])] == ["ep2", "ep10"]
    with pytest.raises(ValueError, match="no checkpoint"):
        expand_model_args([f"m={tmp_path}/*.pth"])
    twice = assign_labels(expand_model_args(["a=random", "a=random"]), ["a", "a"])
    assert [r.label for r in twice] == ["a-random", "a-random-2"]
    assert weights_tag("/x/y/my model.pth") == "my-model"


# ----------------------------------------------------------------------------- item 6: plot scales
def test_plot_scales_cmap_and_overlay():
    import matplotlib.pyplot as plt

    from hpx_analysis.plotting.erf import plot_erf, scaled_map

    m = np.array([[0.0, 1.0], [4.0, 16.0]])
    np.testing.assert_allclose(scaled_map(m, "linear"), m / 16)
    np.testing.assert_allclose(scaled_map(m, "power:0.5"), np.sqrt(m / 16))
    with pytest.raises(ValueError):
        scaled_map(m, "power:-1")
    fig = plot_erf({"a": m}, scale="power:0.25", cmap="magma", overlay=np.ones((8, 8, 3)))
    ax = [a for a in fig.axes if a.images][0]
    assert len(ax.images) == 2 and ax.images[1].get_cmap().name == "magma" and ax.images[1].get_alpha() == 0.6
    plt.close(fig)


# ----------------------------------------------------------------------------- item 5: spread across images
def test_std_map_and_metric_spread_across_images(make_s4, tmp_path):
    from hpx_analysis.erf import ErfResult
    from hpx_analysis.erf.compute import contribution_maps, frozen_for_erf
    from hpx_analysis.erf.spread import PerImage

    model = make_s4("hpx")
    images = _inputs(3)
    per_image = PerImage(keep=True)
    result = compute_erf(model, images, batch_size=2, per_image=per_image)
    with frozen_for_erf(model):
        maps = contribution_maps(model, torch.stack(images)).double().numpy()
    kept = np.stack(per_image.maps)  # float32 passes of 2 + 1 images against one of 3: last bits differ
    np.testing.assert_allclose(kept, maps, rtol=1e-4, atol=1e-4 * maps.max())
    np.testing.assert_allclose(per_image.std(), kept.std(0), rtol=1e-9, atol=1e-12 * maps.max())
    np.testing.assert_allclose(result.matrix, kept.mean(0), rtol=1e-9, atol=1e-12 * maps.max())
    r90 = [erf_metrics(m)["r90_px"] for m in kept]
    assert per_image.spread()["r90_px"] == {
        "mean": pytest.approx(np.mean(r90)),
        "std": pytest.approx(np.std(r90)),
        "min": min(r90),
        "max": max(r90),
    }
    result.per_image, result.std, result.spread, result.model = per_image, per_image.std(), per_image.spread(), "m"
    result.save(tmp_path)
    assert {"erf_m_std.npy", "erf_m_per_image.npz", "erf_m_per_image.csv"} <= {p.name for p in tmp_path.iterdir()}
    back = ErfResult.load(tmp_path, "m")
    np.testing.assert_array_equal(back.std, result.std)
    assert back.spread == result.spread


def test_panel_titles_name_the_map():
    import matplotlib.pyplot as plt

    from hpx_analysis.erf import ErfResult
    from hpx_analysis.plotting.erf import plot_erf

    m = np.ones((8, 8))
    common = dict(used=["x"], skipped=[], nonfinite_values=0, seconds=0.0, method="grad", precision="fp32")
    plain = ErfResult(matrix=m, input_size=(8, 8), device="cpu", settings={"model": "a"}, **common)
    staged = ErfResult(matrix=m, input_size=(8, 8), device="cpu", settings={"model": "a"}, unit={"stage": 2}, **common)
    fig = plot_erf([plain, staged])
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["a", "a\nstage 2"]
    plt.close(fig)
