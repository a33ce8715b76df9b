"""Reference models: checkpoint manifest, forward against an independent functional
re-statement, timm API, the long-convolution interface and its cache."""

import json
from pathlib import Path

import pytest
import timm
import torch

import hpx_analysis  # noqa: F401
from hpx_analysis.models import EXTRA, PUBLISHED, long_conv_mixers, resample_filter_inputs, resolve_name
from hpx_analysis.models.layers import Scale
from hpx_analysis.models.mixers.filters import distance_map

from .helpers.fast_switch import FAST_IDS, FAST_MODES, fast_mode
from .helpers.reference_forward import model_forward

# a copy of shared/reference/official_checkpoints.json (names and shapes of the published checkpoints)
MANIFEST = Path(__file__).with_name("data") / "official_checkpoints.json"


def _manifest():
    return json.loads(MANIFEST.read_text())["models"]


def _meta_model(name):
    with torch.device("meta"):
        return timm.create_model(name)


@pytest.mark.parametrize("name", PUBLISHED)
def test_state_dict_matches_manifest(name):
    ref = _manifest()[name]
    sd = _meta_model(name).state_dict()
    got = {k: list(v.shape) for k, v in sd.items()}
    assert sorted(got) == sorted(ref["state_dict"])
    assert {k: got[k] for k in ref["state_dict"]} == ref["state_dict"]
    # the published code counts H_px's distance map as a (frozen) parameter; H_b's t and
    # deltas are buffers there too
    published_buffers = sum(v.numel() for k, v in sd.items() if k.endswith(("pos_emb.t", "modulation.deltas")))
    assert sum(v.numel() for v in sd.values()) - published_buffers == ref["num_params"]


@pytest.mark.parametrize("name", PUBLISHED + EXTRA)
def test_every_name_creates_with_timm(name):
    m = _meta_model(name)
    assert m.pretrained_cfg["architecture"] == name
    assert timm.is_model(name)


def _randomize(model, seed=0):
    """Give every parameter non-trivial values (norm weights, res scales, windows...)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("deltas",)):
                p.mul_(1 + 0.5 * torch.rand(p.shape, generator=g))
            elif name.endswith(("norm1.weight", "norm2.weight", "scale", "norm.weight", "freq")):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("shift"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.add_(0.02 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("fast", FAST_MODES, ids=FAST_IDS)
@pytest.mark.parametrize("name", ["hpx_former_s4", "hb_former_s4"])
@pytest.mark.parametrize("size", [(64, 64), (96, 64), (112, 144)])
def test_forward_matches_functional_reference(name, size, fast):
    torch.manual_seed(0)
    model = _randomize(timm.create_model(name)).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        with fast_mode(model, fast):
            got = model(x)
        ref = model_forward({k: v.double() for k, v in model.state_dict().items()}, x.double())
    assert got.shape == (2, 1000)
    torch.testing.assert_close(got.double(), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fast", FAST_MODES, ids=FAST_IDS)
@pytest.mark.parametrize("name", ["c_hpx_former_s18", "hpx_a_former_s18", "hb_a_former_s18", "hb_former_b36"])
def test_mixed_and_normed_variants_match_functional_reference(name, fast):
    torch.manual_seed(1)
    # the published mixer layout with one block per stage keeps the test fast
    model = _randomize(timm.create_model(name, depths=(1, 1, 1, 1))).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        with fast_mode(model, fast):
            got = model(x)
        ref = model_forward({k: v.double() for k, v in model.state_dict().items()}, x.double())
    torch.testing.assert_close(got.double(), ref, atol=1e-4, rtol=1e-4)


def test_timm_api():
    model = timm.create_model("hpx_former_s4").eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        feats = model.forward_features(x)
        final, inter = model.forward_intermediates(x)
        logits = model.forward_head(feats)
        torch.testing.assert_close(logits, model(x))
    assert feats.shape == (1, 512, 3, 4)
    assert [t.shape[1:] for t in inter] == [(64, 24, 32), (128, 12, 16), (320, 6, 8), (512, 3, 4)]
    torch.testing.assert_close(final, feats)
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]
    model.reset_classifier(10)
    assert model(x).shape == (1, 10)
    fmodel = timm.create_model("hpx_former_s4", features_only=True, out_indices=(1, 3))
    assert [t.shape[1] for t in fmodel(x)] == [128, 512]


def test_stage_split_equals_full_forward():
    model = timm.create_model("hb_former_s4").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        full = model(x)
        for s in range(5):
            torch.testing.assert_close(model.forward_from_stage(model.forward_to_stage(x, s), s), full)


def test_long_conv_interface_hpx():
    model = timm.create_model("hpx_former_s4").eval()
    mixers = list(long_conv_mixers(model))
    assert [(s, b) for s, b, _ in mixers] == [(0, 0), (1, 0), (2, 0), (3, 0)]
    _, _, m = mixers[0]
    assert m.kernel_ndim == 2 and m.feature_size == (56, 56)
    k, w = m.effective_kernel(), m.window()
    assert k.shape == w.shape == (64, 111, 111)
    lc = m.long_conv
    expected_w = torch.exp(-distance_map(111, 111) * lc.deltas.detach().abs()[0]) + lc.shift.detach()[0]
    torch.testing.assert_close(w, expected_w)
    torch.testing.assert_close(k, lc.implicit_filter(lc.z).detach()[0] * expected_w)
    # window of the initial decay: 1 at the centre, small far away
    assert w[:, 55, 55].min() > 0.99 and w[-1, 0, 0] < 0.05


def test_truncation_zeroes_outside_and_keeps_inside():
    model = timm.create_model("hpx_former_s4").eval()
    _, _, m = next(iter(long_conv_mixers(model)))
    full = m.effective_kernel()
    m.set_truncation(0.5)  # 0.5 * 56 = 28 taps wide: |d| <= 13.5 -> 27 taps
    k = m.effective_kernel()
    inside = torch.zeros(111, 111, dtype=torch.bool)
    inside[55 - 13 : 55 + 14, 55 - 13 : 55 + 14] = True
    assert torch.equal(k[:, inside], full[:, inside])
    assert torch.count_nonzero(k[:, ~inside]) == 0
    m.set_truncation(0.5, "disk")
    kd = m.effective_kernel()
    assert kd[0, 55, 55 + 13] != 0 and kd[0, 55 + 10, 55 + 10] == 0  # sqrt(200) > 13.5
    m.set_truncation(111 / 56)
    assert torch.equal(m.effective_kernel(), full)
    m.set_truncation(None)
    assert m.truncation is None and torch.equal(m.effective_kernel(), full)


def test_truncation_changes_forward_and_full_size_does_not():
    model = timm.create_model("hpx_former_s4").eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        ref = model(x)
        for _, _, m in long_conv_mixers(model):
            m.set_truncation(2.0)
        torch.testing.assert_close(model(x), ref)
        for _, _, m in long_conv_mixers(model):
            m.set_truncation(0.1)
        assert not torch.allclose(model(x), ref)


def test_hb_interface_and_truncation_1d():
    model = timm.create_model("hb_former_s4").eval()
    _, _, m = list(long_conv_mixers(model))[3]
    assert m.kernel_ndim == 1 and m.feature_size == (7, 7)
    k = m.effective_kernel()
    assert k.shape == (512, 97)
    assert m.window().shape == (512, 97)
    m.set_truncation(10 / 49)  # |d| <= 4.5 -> 9 taps
    kt = m.effective_kernel()
    assert torch.count_nonzero(kt[:, :44]) == 0 and torch.count_nonzero(kt[:, 53:]) == 0
    assert torch.equal(kt[:, 44:53], k[:, 44:53])


def test_training_mode_gives_weight_gradients_to_the_filter():
    model = timm.create_model("hpx_former_s4").train()
    model(torch.randn(1, 3, 64, 64)).sum().backward()
    _, _, m = next(iter(long_conv_mixers(model)))
    assert m.long_conv.z.grad is not None and m.long_conv.z.grad.abs().sum() > 0
    assert m.long_conv.deltas.grad is not None


def test_interpolate_variant_loads_224_checkpoint():
    torch.manual_seed(0)
    src = timm.create_model("hpx_former_s18")
    dst = timm.create_model("hpx_former_s18_384_interpolate")
    sd = resample_filter_inputs(src.state_dict(), dst.state_dict())
    dst.load_state_dict(sd, strict=True)
    k = "stages.0.0.token_mixer.long_conv.distance_map"
    expected = distance_map(191, 191) * 111 / 95.5
    torch.testing.assert_close(dst.state_dict()[k][0, 0], expected)
    z = dst.state_dict()["stages.3.1.token_mixer.long_conv.z"]
    assert z.shape == (1, 64, 23, 23)
    # a constant embedding stays constant under the (antialiased bicubic) resampling
    const = {"stages.3.1.token_mixer.long_conv.z": torch.full((1, 64, 13, 13), 0.25)}
    out = resample_filter_inputs(const, dst.state_dict())
    torch.testing.assert_close(out["stages.3.1.token_mixer.long_conv.z"], torch.full((1, 64, 23, 23), 0.25))


def test_aliases_resolve():
    assert resolve_name("hpx_s18") == "hpx_former_s18"
    assert resolve_name("conv_s18") == "convformer_s18"
    assert resolve_name("hb_b36") == "hb_former_b36"
    with pytest.raises(KeyError, match="unknown model"):
        resolve_name("hpx_s19x")


def test_separable_ablation_effective_kernel_is_its_impulse_response():
    from hpx_analysis.models.mixers import HyenaPixelSeparable

    m = HyenaPixelSeparable(dim=3, kernel_size=7, feature_size=(4, 4)).eval()
    with torch.no_grad():
        m.long_conv.long_horizontal_conv.bias.zero_()
        m.long_conv.long_vertical_conv.bias.zero_()
        delta = torch.zeros(1, 3, 9, 9)
        delta[..., 4, 4] = 1.0
        response = m.long_convolution(delta)[0, :, 1:8, 1:8]
    torch.testing.assert_close(response, m.effective_kernel(), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="square"):
        m.set_truncation(0.5, "disk")


def test_explicit_ablation_is_a_direct_convolution_with_skip():
    from hpx_analysis.models import direct_conv2d
    from hpx_analysis.models.mixers import HyenaPixelExplicit

    m = HyenaPixelExplicit(dim=4, kernel_size=9, feature_size=(5, 5)).eval()
    u = torch.randn(2, 4, 6, 5)
    with torch.no_grad():
        expected = direct_conv2d(u, m.long_conv.weight, m.long_conv.bias.reshape(-1))
        torch.testing.assert_close(m.long_convolution(u), expected, atol=1e-5, rtol=1e-5)
    assert m.window() is None


def test_causal_hyena_only_looks_back():
    from hpx_analysis.models.mixers import CausalHyena

    m = CausalHyena(dim=32, feature_size=(4, 4), emb_dim=9, filter_order=16).eval()
    x = torch.randn(1, 4, 4, 32, requires_grad=True)
    m(x)[0, 1, 2].sum().backward()  # output token 1*4+2 = 6
    per_token = x.grad[0].abs().sum(-1).flatten()
    # future tokens get only FFT round-off (~1e-9), past ones O(1)
    assert per_token[:7].sum() > 0.1 and per_token[7:].max() < 1e-6


def test_grad_checkpointing_gives_the_same_input_gradient():
    model = timm.create_model("hpx_former_s4").eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(1, 3, 64, 64)

    def input_grad():
        xi = x.clone().requires_grad_(True)
        f = model.forward_features(xi)
        (g,) = torch.autograd.grad(f[:, :, 1, 1].relu().sum(), xi)
        return g

    plain = input_grad()
    model.set_grad_checkpointing(True)
    torch.testing.assert_close(input_grad(), plain)


@pytest.mark.parametrize("name", ["hpx_former_s4", "hb_former_s12"])
def test_features_at_one_position_equal_the_feature_map_there(name):
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():  # res scales away from their initial 1.0, so that they count
        for m in model.modules():
            if isinstance(m, Scale):
                m.scale.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 64, 64)

    def values_and_input_grad(fn):
        xi = x.clone().requires_grad_(True)
        v = fn(xi)
        (g,) = torch.autograd.grad(v.relu().sum(), xi)
        return v.detach(), g

    fmap = model.forward_features
    for row, col in [(None, None), (0, 1)]:
        r, c = (1, 1) if row is None else (row, col)  # the last map is 2 x 2: centre (1, 1)
        ref = values_and_input_grad(lambda xi: fmap(xi)[:, :, r, c])
        got = values_and_input_grad(lambda xi: model.forward_features_at(xi, row, col))
        torch.testing.assert_close(got, ref)
    centre = values_and_input_grad(lambda xi: fmap(xi)[:, :, 1, 1])
    model.set_grad_checkpointing(True)
    torch.testing.assert_close(values_and_input_grad(model.forward_features_at), centre)
