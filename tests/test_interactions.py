"""Interaction maps against independent computations: completeness of the decomposition for
every mixer type, known answers (a SepConv window, timm's own attention weights, the H_px
formula written out, H_b's 1D pattern on the flattened order) and hand-built distances."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hpx_analysis.interactions import (
    InteractionSettings,
    TokenGrid,
    UnknownMixerError,
    block_maps,
    capture_inputs,
    decompose,
    find_blocks,
    mixer_tokens,
)
from hpx_analysis.models.mixers import (
    Attention,
    BidirectionalHyena,
    BidirectionalHyenaNorm,
    CausalHyena,
    HyenaPixel,
    HyenaPixelExplicit,
    HyenaPixelNoNorm,
    HyenaPixelSeparable,
    SepConv,
)

GRID = (6, 7)


def _randomise_small_params(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial norm weights, biases, gates and scales (inits are often 0 or 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim <= 1 or p.shape[0] == 1:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + 0.5)
    return module.eval()


def _complete(mixer, x, grid, prefix=0) -> float:
    """max |sum_j c(i, j) + e(i) - mixer(x)(i)| / max |mixer(x)| over all tokens."""
    contrib = decompose(mixer, x, grid, prefix)
    n = grid[0] * grid[1] + prefix
    with torch.no_grad():
        c, e = contrib.contributions(torch.arange(n))
        ref = mixer_tokens(mixer, x)
    return float((c.sum(1) + e - ref).abs().max() / ref.abs().max())


def _channels_last(dim, seed=0):
    return torch.randn(1, *GRID, dim, generator=torch.Generator().manual_seed(seed))


MIXERS = {
    "HyenaPixel": lambda: HyenaPixel(16, 15, 8, (8, 8)),
    "HyenaPixelNoNorm": lambda: HyenaPixelNoNorm(16, 15, 8, (8, 8)),
    "HyenaPixelExplicit": lambda: HyenaPixelExplicit(16, 15, (8, 8)),
    "HyenaPixelSeparable": lambda: HyenaPixelSeparable(16, 15, (8, 8)),
    "BidirectionalHyena": lambda: BidirectionalHyena(16, (8, 8), 9),
    "BidirectionalHyenaNorm": lambda: BidirectionalHyenaNorm(16, (8, 8), 9),
    "CausalHyena": lambda: CausalHyena(16, (8, 8), 9),
    "SepConv": lambda: SepConv(16),
    "Attention": lambda: Attention(32, head_dim=8),
}


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_contributions_add_up_to_the_mixer_output(name):
    mixer = _randomise_small_params(MIXERS[name]())
    dim = 32 if name == "Attention" else 16
    assert _complete(mixer, _channels_last(dim), GRID) < 1e-5


@pytest.mark.parametrize("kind", ["hpx", "hb"])
def test_contributions_add_up_on_s4_blocks(make_s4, kind):
    """The published S4 blocks (their real kernels, 111 taps or 2 * 256 - 1) on the inputs a
    64 px image gives them."""
    model = make_s4(kind)
    _randomise_small_params(model)
    blocks = find_blocks(model, ((0, 0), (1, 0)))
    inputs = capture_inputs(model, torch.randn(1, 3, 64, 64), blocks)
    for blk in blocks:
        x = inputs[blk.name]
        assert _complete(blk.mixer, x, tuple(x.shape[1:3])) < 1e-5, blk.name


def test_timm_sepconv_and_attention_add_up():
    from timm.layers import Attention as VitAttention
    from timm.models.metaformer import Attention as MetaAttention
    from timm.models.metaformer import SepConv as TimmSepConv

    sep = _randomise_small_params(TimmSepConv(16, bias=True))
    assert _complete(sep, torch.randn(1, 16, *GRID), GRID) < 1e-5
    meta = _randomise_small_params(MetaAttention(32, head_dim=8))
    assert _complete(meta, torch.randn(1, GRID[0] * GRID[1], 32), GRID) < 1e-5
    vit = _randomise_small_params(VitAttention(32, num_heads=4, qkv_bias=True, qk_norm=True, norm_layer=nn.LayerNorm))
    assert _complete(vit, torch.randn(1, 1 + GRID[0] * GRID[1], 32), GRID, prefix=1) < 1e-5


def test_sepconv_map_is_zero_outside_its_7x7_window():
    mixer = _randomise_small_params(SepConv(8, kernel_size=7))
    grid = (13, 12)
    contrib = decompose(mixer, torch.randn(1, *grid, 8), grid)
    for qr, qc in [(6, 5), (0, 0), (12, 11), (2, 9)]:
        c, _ = contrib.contributions(torch.tensor([qr * grid[1] + qc]))
        r = c[0].norm(dim=-1).reshape(grid)
        rows = torch.arange(grid[0])[:, None]
        cols = torch.arange(grid[1])[None]
        window = ((rows - qr).abs() <= 3) & ((cols - qc).abs() <= 3)
        assert torch.all(r[~window] == 0)
        assert torch.all(r[window] > 0)


@pytest.mark.parametrize("kind", ["vit", "metaformer"])
def test_attention_weights_equal_timms_own(kind):
    """timm's unfused attention path passes its softmax through ``attn_drop``; a hook there
    reads the weights timm computes."""
    from timm.layers import Attention as VitAttention
    from timm.models.metaformer import Attention as MetaAttention

    if kind == "vit":
        mixer, prefix = VitAttention(32, num_heads=4, qkv_bias=True), 1
    else:
        mixer, prefix = MetaAttention(32, head_dim=8), 0
    _randomise_small_params(mixer).fused_attn = False
    x = torch.randn(1, prefix + GRID[0] * GRID[1], 32)
    seen = []
    handle = mixer.attn_drop.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            mixer(x)
    finally:
        handle.remove()
    contrib = decompose(mixer, x, GRID, prefix)
    ours = contrib.weights(torch.arange(x.shape[1]))
    torch.testing.assert_close(ours, seen[0][0], rtol=1e-5, atol=1e-6)


def test_hyena_pixel_map_is_the_formula_written_out():
    """c(i, j) = W_out LN_i(v(i) K(i - j) u(j)) (+ v(i) b u(i) at j = i), K read off the
    filter's kernel tap by tap, sigma(i) from the whole z(i)."""
    mixer = _randomise_small_params(HyenaPixel(8, 9, 8, (5, 5)))
    h, w = 4, 5
    x = torch.randn(1, h, w, 8)
    with torch.no_grad():
        qkv = mixer.depthwise_conv(mixer.pointwise_conv(x.permute(0, 3, 1, 2)))[0]
        q, k, v = qkv.split(8)
        u = mixer.qk_norm((q * k).permute(1, 2, 0))  # (h, w, C)
        v = v.permute(1, 2, 0)
        kernel = mixer.long_conv.kernel()  # (C, 9, 9)
        bias = mixer.long_conv.bias.reshape(-1)
        query = (2, 3)
        z = torch.zeros(h, w, 8)
        for a in range(h):
            for b in range(w):
                tap = kernel[:, 4 + query[0] - a, 4 + query[1] - b]
                z[a, b] = v[query] * tap * u[a, b]
        z[query] += v[query] * bias * u[query]
        sigma = torch.sqrt(z.sum((0, 1)).var(unbiased=False) + mixer.out_norm.eps)
        normed = (z - z.mean(-1, keepdim=True)) / sigma * mixer.out_norm.weight
        expected = (normed @ mixer.out_proj.weight.T).norm(dim=-1)
        contrib = decompose(mixer, x, (h, w))
        c, _ = contrib.contributions(torch.tensor([query[0] * w + query[1]]))
    torch.testing.assert_close(c[0].norm(dim=-1).reshape(h, w), expected, rtol=1e-5, atol=1e-6)


def test_hb_pattern_follows_its_1d_kernel_on_the_flattened_order():
    """A truncated H_b kernel keeps |d| <= 8 taps: the map of token i is non-zero exactly at
    the tokens within 8 places of i in raster order, so it wraps onto the rows above and below."""
    h, w = GRID
    mixer = _randomise_small_params(BidirectionalHyena(16, (h, w), 9))
    mixer.set_truncation(17 / (h * w))  # keeps (17 - 1) / 2 = 8 taps on each side
    contrib = decompose(mixer, _channels_last(16), GRID)
    n = h * w
    for query in (0, 10, 20, n - 1):
        c, _ = contrib.contributions(torch.tensor([query]))
        r = c[0].norm(dim=-1)
        inside = (torch.arange(n) - query).abs() <= 8
        assert torch.all(r[~inside] == 0) and torch.all(r[inside] > 0), query
    # query 20 = (2, 6): the row below is reached from its first column on (a wrap)
    c, _ = contrib.contributions(torch.tensor([20]))
    assert c[0].norm(dim=-1).reshape(h, w)[3, 0] > 0


class _HandBuilt:
    """Contributions given as a matrix: c(i, j) = R[i, j] along one channel."""

    prefix = 0
    width = 1

    def __init__(self, r: torch.Tensor):
        self.r = r

    def contributions(self, queries):
        return self.r[queries][..., None], torch.zeros(len(queries), 1)


def _row_grid(n: int, spacing: float) -> TokenGrid:
    centres = torch.stack([torch.zeros(n, dtype=torch.float64), torch.arange(n) * spacing], 1)
    return TokenGrid((1, n), centres, "hand")


def test_mean_distance_of_hand_built_maps():
    grid = _row_grid(3, 4.0)  # tokens at columns 0, 4, 8 px
    r = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 0.0], [3.0, 0.0, 1.0]])
    settings = InteractionSettings(size=16)
    every = block_maps(_HandBuilt(r), grid, torch.arange(3), {}, settings)
    # sum r d = 1 * 4 + 3 * 8 = 28, sum r = 8
    assert every.distance_px == pytest.approx(28 / 8)
    assert every.query_distance_px.tolist() == pytest.approx([2.0, 0.0, 6.0])
    one = block_maps(_HandBuilt(r), grid, torch.tensor([2]), {"centre": 1}, settings)
    assert one.distance_px == pytest.approx(24 / 4)
    assert one.maps["centre"].tolist() == [[0.0, 2.0, 0.0]]


def test_unknown_mixer_is_named():
    with pytest.raises(UnknownMixerError, match="Identity"):
        decompose(nn.Identity(), torch.randn(1, *GRID, 4), GRID)
    from timm.models.metaformer import SepConv as TimmSepConv

    nonlinear = TimmSepConv(8, act2_layer=nn.ReLU)
    with pytest.raises(UnknownMixerError, match="activation after its depthwise conv"):
        decompose(nonlinear, torch.randn(1, 8, *GRID), GRID)


def test_distance_of_a_shifted_kernel_is_its_shift():
    """An explicit H_px kernel with a single tap two tokens to the right (and no skip): every
    query reads only the token 2 columns to its left, 2 * stride px away."""
    mixer = HyenaPixelExplicit(4, 7, (6, 6)).eval()
    with torch.no_grad():
        mixer.long_conv.weight.zero_()
        mixer.long_conv.weight[:, 3, 5] = 1.0  # K(0, +2): y(i) = u(i - (0, 2))
        mixer.long_conv.bias.zero_()
    x = torch.randn(1, 6, 6, 4)
    stride = 4.0
    rows, cols = torch.meshgrid(torch.arange(6.0), torch.arange(6.0), indexing="ij")
    centres = torch.stack([rows, cols], -1).reshape(-1, 2).double() * stride
    grid = TokenGrid((6, 6), centres, "hand")
    queries = torch.tensor([r * 6 + c for r in range(6) for c in range(2, 6)])  # with a token 2 to the left
    one = block_maps(decompose(mixer, x, (6, 6)), grid, queries, {}, InteractionSettings(size=24))
    assert one.distance_px == pytest.approx(2 * stride, rel=1e-6)
    assert math.isfinite(one.distance_px)
