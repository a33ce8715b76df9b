"""Linear layers with constant weights through oneDNN, each weight reordered once.

:func:`~.layers.channel_linear` runs a linear layer on x86 CPUs as a oneDNN 1x1
convolution, which reorders the weight into oneDNN's blocked layout on every call. When
the weight is a constant (the fixed-weight paths that every analysis here takes: eval mode,
frozen parameters), the reordered weight can be kept: ``torch.ops.mkldnn._reorder_linear_weight``
reorders it once and ``torch.ops.mkldnn._linear_pointwise`` multiplies with it (the pair
of operators Inductor uses for frozen linear layers on the CPU). On this project's 2-core
CPU that is 1-17 % faster per product for hpx_former_s18's shapes at 1024 px, most for the
2048-token blocks of the MLP and the last stage (``python benchmarks/gemm_backends.py``
prints all three ways); it also saves the backward passes' copies of transposed weights.
Per 1024 px image: about 6 % for hpx_former_s18 (median of 8 paired passes), 8 % for
hb_former_s18 (4 pairs); the ERF moves by 3e-6 of its mass (rounding).

Reordered weights are kept by :func:`.weight_cache.derived` under their owning parameter
and a recipe (the weight as used, its transpose for the input gradient, a weight with
StarReLU's scale folded in), and made again when the owner or a tensor the recipe depends
on changes.
Where the operators are missing (other platforms, builds without oneDNN) :func:`applies`
is False and the callers use :func:`~.layers.channel_linear`.
"""
from __future__ import annotations

import platform
from typing import Callable

import torch

from .weight_cache import derived

__all__ = ["available", "applies", "packed_weight", "linear"]

# batch-size hint for the reorder (any number of rows works with the result)
_ROWS_HINT = 2048


def _find_ops() -> bool:
    if not torch.backends.mkldnn.is_available() or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    ops = torch.ops.mkldnn
    return hasattr(ops, "_reorder_linear_weight") and hasattr(ops, "_linear_pointwise")


_AVAILABLE = _find_ops()


def available() -> bool:
    """Whether this PyTorch build has the oneDNN operators (x86 CPUs with oneDNN)."""
    return _AVAILABLE


def applies(x: torch.Tensor) -> bool:
    """Whether a product with input ``x`` can take the reordered-weight path: a float32 CPU
    tensor, outside CPU autocast and ``torch.compile`` tracing."""
    return (_AVAILABLE and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())


def packed_weight(owner: torch.Tensor, recipe: str, build: Callable[[], torch.Tensor],
                  depends: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
    """The oneDNN-reordered ``build()`` (an ``(out, in)`` float32 weight derived from
    ``owner``, and from the tensors in ``depends``), cached under ``owner`` and ``recipe``."""
    def reorder() -> torch.Tensor:
        weight = build().detach().float().contiguous()
        return torch.ops.mkldnn._reorder_linear_weight(weight, _ROWS_HINT)
    return derived(owner, "onednn:" + recipe, reorder, depends)


def linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None = None,
           relu: bool = False) -> torch.Tensor:
    """``x @ W.T + bias`` over the last axis of ``x`` with a weight from :func:`packed_weight`;
    with ``relu``, ``relu(x @ W.T + bias)`` in the same pass (oneDNN's post-op)."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, None if bias is None else bias.detach(),
                                              "relu" if relu else "none", [], "")
