"""The ERF benchmark's published-style baseline (benchmarks/published_metaformer.py) loads
our weights strictly and computes the same features and input gradients as our model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

import hpx_analysis  # noqa: F401  (registers the models)
from benchmarks.published_metaformer import PublishedStyleMetaFormer, published_style_copy
from hpx_analysis.erf import frozen_for_erf
from hpx_analysis.models.metaformer import SEPCONV, HyenaMetaFormer

from .helpers.fast_switch import FAST_IDS, FAST_MODES, fast_mode

# names and shapes of the published checkpoints (copy of shared/reference/official_checkpoints.json)
CHECKPOINTS = Path(__file__).with_name("data") / "official_checkpoints.json"


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    ours = timm.create_model("hpx_former_s4").eval()
    return ours, published_style_copy(ours)


def _features_and_centre_grad(model, x):
    x = x.clone().requires_grad_(True)
    out = model.forward_features(x)
    h, w = out.shape[-2:]
    (grad,) = torch.autograd.grad(torch.relu(out[:, :, h // 2, w // 2]).sum(), x)
    return out.detach(), grad


def _rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_baseline_is_independent_and_loads_strictly(models):
    ours, baseline = models
    assert isinstance(baseline, PublishedStyleMetaFormer) and not baseline.training
    assert not any(m.__module__.startswith("hpx_analysis") for m in baseline.modules())
    assert baseline.state_dict().keys() == ours.state_dict().keys()
    frozen = [n for n, p in baseline.named_parameters() if not p.requires_grad]
    assert frozen and all(n.endswith("long_conv.distance_map") for n in frozen)


@pytest.mark.parametrize("fast", FAST_MODES, ids=FAST_IDS)
@pytest.mark.parametrize("hw", [(64, 64), (96, 64)])
def test_features_and_input_gradient_match_ours(models, hw, fast):
    # trainable weights: the fast classes fall back to the plain forwards
    ours, baseline = models
    x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(1))
    f_pub, g_pub = _features_and_centre_grad(baseline, x)
    with fast_mode(ours, fast):
        f_ours, g_ours = _features_and_centre_grad(ours, x)
        with torch.no_grad():
            logits = ours(x)
    assert f_pub.shape == f_ours.shape == (1, 512, hw[0] // 32, hw[1] // 32)
    assert _rel_err(f_pub, f_ours) < 1e-4
    assert g_ours.abs().max() > 0 and _rel_err(g_pub, g_ours) < 1e-4
    with torch.no_grad():
        assert _rel_err(baseline(x), logits) < 1e-4


@pytest.mark.parametrize("fast", FAST_MODES, ids=FAST_IDS)
def test_frozen_model_matches_the_baseline(models, fast):
    # frozen, our model with fast_paths takes its fixed-weight paths (cached spectra with the
    # mirrored-kernel backward, the blocked MLP, oneDNN linear layers); the baseline has none
    ours, baseline = models
    x = torch.randn(1, 3, 96, 64, generator=torch.Generator().manual_seed(2))
    f_pub, g_pub = _features_and_centre_grad(baseline, x)
    with fast_mode(ours, fast), frozen_for_erf(ours):
        f_ours, g_ours = _features_and_centre_grad(ours, x)
    assert _rel_err(f_ours, f_pub) < 1e-4 and _rel_err(g_ours, g_pub) < 1e-4


def test_parameter_names_and_shapes_are_the_published_checkpoints():
    ref = json.loads(CHECKPOINTS.read_text())["models"]["hpx_former_s18"]["state_dict"]
    net = PublishedStyleMetaFormer(
        (3, 3, 9, 3),
        (64, 128, 320, 512),
        (111, 55, 27, 13),
        (32, 32, 48, 64),
        (64, 64, 96, 128),
        res_scale_stages=(2, 3),
    )
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == ref


def test_unsupported_mixers_are_refused():
    tiny = HyenaMetaFormer(depths=(1, 1), dims=(8, 16), mixers=(SEPCONV, SEPCONV), num_classes=4)
    with pytest.raises(ValueError, match="only HyenaPixel"):
        published_style_copy(tiny)
    with pytest.raises(TypeError):
        published_style_copy(torch.nn.Linear(2, 2))
