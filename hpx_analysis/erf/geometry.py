"""Where an ERF's output unit sits in the input, and its theoretical receptive field.

- :func:`unit_position`: the centre unit's index on its map and its position in input
  pixels. The position follows the chain of strided convolutions and poolings that lead
  from the input grid to the map's grid (recorded with forward hooks on one forward pass):
  a layer with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` puts output
  index ``i`` at input position ``s * i - p + d * (k - 1) / 2`` (the middle of its window).
  Layers that keep the grid size are taken as centred ("same" padding). Where no such
  chain is found (patchifying by reshape, interpolation) the unit is put at the middle of
  its cell, ``(i + 0.5) * stride - 0.5``, and the record says so. For timm's ResNets at
  224 px the centre unit ``(3, 3)`` of the 7 x 7 map sits at pixel ``(96, 96)``, 16 px
  above and left of the image centre; this project's MetaFormers put unit ``i`` of stage 3
  at ``32 i + 1``.
- :func:`theoretical_rf`: the support of the unit's input gradient (pixels where it is
  non-zero for any of a few random inputs), computed once per model, map and size. It is
  the receptive field at the given weights: weights that are exactly zero (timm's
  zero-initialised residual branches at random init) shrink it.
"""

from __future__ import annotations

import torch
from torch import nn

from .unit import ErfUnit

__all__ = ["unit_position", "theoretical_rf"]

_GEOMETRIC = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _probe_input(model: nn.Module, size: tuple[int, int]) -> torch.Tensor:
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return torch.zeros(1, 3, *size, device=device, dtype=dtype)


def unit_position(model: nn.Module, size: int | tuple[int, int], unit: ErfUnit | None = None) -> dict:
    """The centre unit of ``unit``'s map at input ``size``: ``map_size``, ``index`` (row,
    column), ``centre_px`` (row, column in input pixels), ``stride`` (input pixels per map
    step) and ``rule`` (``"layer chain"`` or ``"cell centre (assumed)"``).

    Args:
        model: the model.
        size: the input side (or height, width) in pixels.
        unit: the output unit (default: the last feature map's centre).

    Returns:
        dict: ``map_size``, ``index``, ``centre_px``, ``stride`` and ``rule``.
    """
    from .compute import frozen_for_erf

    unit = unit or ErfUnit()
    size = _pair(size)
    calls: list[tuple[tuple[int, int], tuple[int, int], nn.Module]] = []

    def hook(module, inputs, output):
        if isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor) and inputs[0].ndim == 4:
            calls.append((tuple(inputs[0].shape[-2:]), tuple(output.shape[-2:]), module))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _GEOMETRIC)]
    try:
        with frozen_for_erf(model), torch.no_grad():
            fmap, tokens = unit.feature_map(model, _probe_input(model, size))
    finally:
        for h in handles:
            h.remove()
    h, w = fmap.shape[-2:]
    index = unit.centre(h, w, tokens=tokens)
    centre, rules = [], []
    for axis in (0, 1):
        pos, rule = _along_chain(calls, axis, size[axis], (h, w)[axis], index[axis])
        centre.append(pos)
        rules.append(rule)
    return {
        "map_size": [int(h), int(w)],
        "index": [int(index[0]), int(index[1])],
        "centre_px": [float(centre[0]), float(centre[1])],
        "stride": [size[0] / h, size[1] / w],
        "rule": rules[0] if rules[0] == rules[1] else f"rows: {rules[0]}; columns: {rules[1]}",
    }


def _along_chain(calls, axis: int, n_in: int, n_out: int, index: int) -> tuple[float, str]:
    """Input position of map index ``index`` along one axis (see the module docstring)."""
    steps = {}
    for shape_in, shape_out, module in calls:
        a, b = shape_in[axis], shape_out[axis]
        if b < a and a not in steps:  # the first layer seen that shrinks this grid
            steps[a] = (b, module)
    chain, current = [], n_in
    while current != n_out and current in steps:
        nxt, module = steps[current]
        chain.append(module)
        current = nxt
    if current != n_out or not chain:
        stride = n_in / n_out
        return (index + 0.5) * stride - 0.5, "cell centre (assumed)"
    pos = float(index)
    for module in reversed(chain):
        k = _pair(module.kernel_size)[axis]
        s = _pair(module.stride if module.stride is not None else module.kernel_size)[axis]
        p = _pair(module.padding)[axis] if not isinstance(module.padding, str) else (k - 1) // 2
        d = _pair(getattr(module, "dilation", 1))[axis]
        pos = s * pos - p + d * (k - 1) / 2
    return pos, "layer chain"


def theoretical_rf(
    model: nn.Module, size: int | tuple[int, int], unit: ErfUnit | None = None, trials: int = 2, seed: int = 0
) -> dict:
    """The support of the unit's input gradient: ``mask`` (bool H x W), ``pixels`` (its
    count), ``rows`` / ``cols`` (first and last row / column of its bounding box).

    The unit here is the sum over channels of the map at the centre unit (no ReLU, so that
    no channel is cut off); the gradient's support is the union over ``trials`` random
    normal inputs (a ReLU may hide a path for one input).

    Args:
        model: the model.
        size: the input side (or height, width) in pixels.
        unit: the output unit (default: the last feature map's centre).
        trials: how many random inputs.
        seed: their seed.

    Returns:
        dict: ``mask``, ``pixels``, ``rows`` and ``cols``.
    """
    from .compute import frozen_for_erf

    unit = unit or ErfUnit()
    size = _pair(size)
    probe = _probe_input(model, size)
    gen = torch.Generator().manual_seed(seed)
    support = torch.zeros(size, dtype=torch.bool)
    with frozen_for_erf(model):
        for _ in range(trials):
            x = torch.randn(probe.shape, generator=gen).to(probe).requires_grad_(True)
            fmap, tokens = unit.feature_map(model, x)
            i, j = unit.centre(*fmap.shape[-2:], tokens=tokens)
            (grad,) = torch.autograd.grad(fmap[:, :, i, j].sum(), x)
            support |= (grad.detach().abs().sum((0, 1)) > 0).cpu()
    rows = torch.nonzero(support.any(1)).flatten()
    cols = torch.nonzero(support.any(0)).flatten()
    box = lambda v: [int(v[0]), int(v[-1])] if len(v) else None  # noqa: E731
    return {"mask": support.numpy(), "pixels": int(support.sum()), "rows": box(rows), "cols": box(cols)}
