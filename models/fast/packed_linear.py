"""Linear layers with constant weights through oneDNN, each weight reordered once.

For a constant weight (eval mode, frozen parameters: every analysis here)
``torch.ops.mkldnn._reorder_linear_weight`` reorders it once into oneDNN's blocked layout
and ``torch.ops.mkldnn._linear_pointwise`` multiplies with it (the pair of private
operators Inductor uses for frozen linear layers on the CPU). On this project's 2-core CPU
that is 1-17 % faster per product than a oneDNN 1x1 convolution for hpx_former_s18's shapes
at 1024 px, most for the 2048-token MLP blocks and the last stage
(``benchmarks/gemm_backends.py``); per 1024 px image about 6 % for hpx_former_s18 and 8 %
for hb_former_s18; the ERF moves by 3e-6 of its mass (rounding).

Reordered weights are kept by :func:`.weight_cache.derived` under their owning parameter
and a recipe (the weight as used, its transpose for the input gradient, a weight with
StarReLU's scale folded in). The operators are probed once (:mod:`.probe`) against
``F.linear``; where they are missing or wrong, :func:`applies` is False and the callers use
plain products.
"""

from __future__ import annotations

import platform
from collections.abc import Callable

import torch
import torch.nn.functional as F

from . import probe
from .weight_cache import derived

__all__ = ["PROBE", "applies", "packed_weight", "linear"]

PROBE = "onednn_linear"

# batch-size hint for the reorder (any number of rows works with the result)
_ROWS_HINT = 2048


def _reorder_linear_weight(weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight, _ROWS_HINT)


def _linear_pointwise(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, attr: str) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, attr, [], "")


def _probe() -> str | None:
    if not torch.backends.mkldnn.is_available():
        return "this PyTorch build has no oneDNN"
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"measured on x86-64 CPUs only, this is {platform.machine()}"
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(5, 8, generator=g), torch.randn(6, 8, generator=g), torch.randn(6, generator=g)
    packed = _reorder_linear_weight(w)
    return probe.compare(
        _linear_pointwise(x, packed, b, "none"), F.linear(x, w, b), "_linear_pointwise"
    ) or probe.compare(
        _linear_pointwise(x, packed, b, "relu"), F.relu(F.linear(x, w, b)), "_linear_pointwise with ReLU"
    )


probe.register(probe.Check(PROBE, _probe, "F.linear"))


def applies(x: torch.Tensor) -> bool:
    """Whether a product with input ``x`` can take the reordered-weight path: a float32 CPU
    tensor, outside CPU autocast and ``torch.compile`` tracing, with working operators."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and probe.passes(PROBE)
    )


def packed_weight(
    owner: torch.Tensor, recipe: str, build: Callable[[], torch.Tensor], depends: tuple[torch.Tensor, ...] = ()
) -> torch.Tensor:
    """The oneDNN-reordered ``build()`` (an ``(out, in)`` float32 weight derived from
    ``owner``, and from the tensors in ``depends``), cached under ``owner`` and ``recipe``."""
    return derived(
        owner, "onednn:" + recipe, lambda: _reorder_linear_weight(build().detach().float().contiguous()), depends
    )


def linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False) -> torch.Tensor:
    """``x @ W.T + bias`` over the last axis of ``x`` with a weight from :func:`packed_weight`;
    with ``relu``, ``relu(x @ W.T + bias)`` in the same pass (oneDNN's post-op)."""
    return _linear_pointwise(x, packed, None if bias is None else bias.detach(), "relu" if relu else "none")
