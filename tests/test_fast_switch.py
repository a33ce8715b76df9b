"""The fast-path switch (HPX_ANALYSIS_FAST, set_enabled, fast_paths), the operator probes,
and whole models with the fast paths against the same models without them."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import hpx_analysis  # noqa: F401  (registers the models)
from hpx_analysis.models import fast
from hpx_analysis.models.fast import fast_paths, mkl_irfft2, packed_linear, probe, set_enabled
from hpx_analysis.models.fast.modules import FAST_CLASSES, FastHyenaPixel, FastLinear
from hpx_analysis.models.mixers import HyenaPixel


@pytest.fixture(autouse=True)
def switch_from_env_and_fresh_probes():
    set_enabled(None)
    yield
    set_enabled(None)
    probe.reset()  # a test may have probed a broken operator


# ----------------------------------------------------------------------------- the switch
@pytest.mark.parametrize("value, expected", [(None, True), ("1", True), ("0", False), (" 0 ", False)])
def test_the_environment_variable_says_whether_the_paths_are_on(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("HPX_ANALYSIS_FAST", raising=False)
    else:
        monkeypatch.setenv("HPX_ANALYSIS_FAST", value)
    assert fast.enabled() is expected


@pytest.mark.parametrize("value", ["yes", "2", "", "true"])
def test_other_values_of_the_environment_variable_are_refused(monkeypatch, value):
    monkeypatch.setenv("HPX_ANALYSIS_FAST", value)
    with pytest.raises(ValueError, match="HPX_ANALYSIS_FAST must be 0 .* or 1"):
        fast.enabled()


def test_set_enabled_overrides_the_environment_until_reset(monkeypatch):
    monkeypatch.setenv("HPX_ANALYSIS_FAST", "0")
    set_enabled(True)
    assert fast.enabled()
    monkeypatch.setenv("HPX_ANALYSIS_FAST", "1")
    set_enabled(False)
    assert not fast.enabled()
    set_enabled(None)
    assert fast.enabled()
    with pytest.raises(TypeError):
        set_enabled("1")


def _small_hpx() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("hpx_former_s4").eval()


def _classes(model: nn.Module) -> list[type]:
    return [type(m) for m in model.modules()]


def test_fast_paths_swaps_classes_and_keeps_state_and_hooks():
    set_enabled(True)
    model = _small_hpx()
    before = _classes(model)
    state = model.state_dict()
    calls = []
    mixer = model.stages[0][0].token_mixer
    mixer.register_forward_hook(lambda *args: calls.append(1))
    with fast_paths(model) as swapped:
        assert swapped == sum(cls in FAST_CLASSES for cls in before) > 0
        assert type(mixer) is FastHyenaPixel and isinstance(mixer, HyenaPixel)
        assert all(type(m) in FAST_CLASSES.values() for m, cls in zip(model.modules(), before) if cls in FAST_CLASSES)
        inside = model.state_dict()
        assert list(inside) == list(state)
        assert all(inside[k].data_ptr() == state[k].data_ptr() for k in state)
        model(torch.randn(1, 3, 64, 64))
    assert calls == [1]
    assert _classes(model) == before


def test_classes_are_restored_after_an_exception():
    set_enabled(True)
    model = _small_hpx()
    before = _classes(model)
    with pytest.raises(RuntimeError, match="inside"):
        with fast_paths(model):
            raise RuntimeError("inside")
    assert _classes(model) == before


def test_nested_use_swaps_once_and_the_inner_exit_keeps_the_outer_swap():
    set_enabled(True)
    model = _small_hpx()
    before = _classes(model)
    with fast_paths(model) as outer:
        swapped = _classes(model)
        with fast_paths(model) as inner, fast_paths(model.stages[0][0].token_mixer) as innermost:
            assert inner == 0 and innermost == 0
        assert _classes(model) == swapped
        with fast_paths(model) as again:
            assert again == 0
    assert outer > 0 and _classes(model) == before
    # a part first, then the whole: the whole block swaps the rest and leaves the part to its block
    lin = model.head.fc1
    with fast_paths(lin) as part:
        with fast_paths(model) as whole:
            assert part == 1 and whole == outer - 1
        assert type(lin) is FastLinear and type(model.head.fc2) is nn.Linear
    assert _classes(model) == before


def test_disabled_switch_swaps_nothing(monkeypatch):
    monkeypatch.setenv("HPX_ANALYSIS_FAST", "0")
    model = _small_hpx()
    before = _classes(model)
    with fast_paths(model) as swapped:
        assert swapped == 0 and _classes(model) == before


# ----------------------------------------------------------------------------- the probes
def _frozen_linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(24, 40).eval().requires_grad_(False)


def _probe_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "hpx_analysis fast path" in str(w.message)]


@pytest.mark.parametrize("broken", ["missing", "wrong"])
def test_a_broken_onednn_operator_turns_its_path_off_with_one_warning(monkeypatch, broken):
    if broken == "missing":

        def linear_pointwise(*args):
            raise AttributeError("'_OpNamespace' 'mkldnn' object has no attribute '_linear_pointwise'")
    else:

        def linear_pointwise(x, packed, bias, attr):
            return torch.zeros(*x.shape[:-1], 6)

    monkeypatch.setattr(packed_linear, "_linear_pointwise", linear_pointwise)
    probe.reset(packed_linear.PROBE)
    set_enabled(True)
    lin = _frozen_linear()
    x = torch.randn(300, 24)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with fast_paths(lin):
            y1, y2 = lin(x), lin(x)
        assert not fast.available()[packed_linear.PROBE]
    messages = _probe_warnings(record)
    assert len(messages) == 1
    assert messages[0].startswith("hpx_analysis fast path 'onednn_linear' is off (")
    assert ("AttributeError" if broken == "missing" else "differs from the plain result") in messages[0]
    assert messages[0].endswith("; using F.linear")
    assert fast.probe_report()[packed_linear.PROBE].startswith("off: ")
    for y in (y1, y2):
        torch.testing.assert_close(y, F.linear(x, lin.weight, lin.bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("broken", ["missing", "wrong"])
def test_a_broken_mkl_inverse_fft_falls_back_to_irfftn_with_one_warning(monkeypatch, broken):
    if broken == "missing":
        monkeypatch.setattr(mkl_irfft2, "_dfti", None)
    else:
        monkeypatch.setattr(
            mkl_irfft2,
            "_mkl_irfft2",
            lambda spectrum, shape, stride: torch.fft.irfftn(spectrum, s=shape, dim=(-2, -1)) + 1,
        )
    probe.reset(mkl_irfft2.PROBE)
    spectrum = torch.fft.rfftn(torch.randn(2, 8, 10), dim=(-2, -1))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = [mkl_irfft2.irfft2(spectrum, (8, 10)) for _ in range(2)]
    messages = _probe_warnings(record)
    assert len(messages) == 1 and "'mkl_irfft2' is off" in messages[0] and messages[0].endswith("torch.fft.irfftn")
    assert ("not exported" if broken == "missing" else "differs") in messages[0]
    for y in got:
        torch.testing.assert_close(y, torch.fft.irfftn(spectrum, s=(8, 10), dim=(-2, -1)))


def test_the_probes_report_every_private_path():
    report = fast.probe_report()
    assert set(report) == {"onednn_linear", "mkl_irfft2"} == set(fast.available())
    assert all(v == "on" or v.startswith("off: ") for v in report.values())


# ----------------------------------------------------------------------------- whole models
SMALL = dict(depths=(1, 1, 1, 1))
MODELS = [
    ("hpx_former_s4", {}),
    ("hb_former_s4", {}),
    ("c_hpx_former_s18", SMALL),
    ("hpx_a_former_s18", SMALL),
    ("hb_a_former_s18", SMALL),
    ("hpx_explicit_former_s18", SMALL),
    ("hpx_sep_former_s18", SMALL),
    ("hyena_causal_former_s18", SMALL),
]


def _outputs_and_input_gradient(model: nn.Module, x: torch.Tensor):
    x = x.clone().requires_grad_(True)
    feats = model.forward_features(x)
    logits = model.forward_head(feats)
    h, w = feats.shape[-2:]
    (grad,) = torch.autograd.grad(feats[:, :, h // 2, w // 2].relu().sum() + logits.square().mean(), x)
    return feats.detach(), logits.detach(), grad


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("name, kwargs", MODELS, ids=[name for name, _ in MODELS])
def test_frozen_models_give_the_plain_outputs_and_input_gradients(name, kwargs):
    set_enabled(True)
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval().requires_grad_(False)
    with torch.no_grad():  # windows and skips away from their initial values
        for pname, p in model.named_parameters():
            if pname.endswith(("shift", "long_conv.bias", "filter_fn.bias")):
                p.normal_(0, 0.3)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    plain = _outputs_and_input_gradient(model, x)
    with fast_paths(model) as swapped:
        assert swapped > 0
        fast_result = _outputs_and_input_gradient(model, x)
    for got, ref in zip(fast_result, plain):
        assert got.shape == ref.shape and _rel_err(got, ref) < 1e-4
    after = model.state_dict()
    assert list(after) == list(state) and all(torch.equal(after[k], state[k]) for k in state)
