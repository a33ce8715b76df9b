"""``hpx-analyze kernels``: learned long-convolution kernels per stage (the paper's Fig. 4).

Writes into ``--out`` (default ``figures/kernels``), per model: ``kernels_<model>.npz``
(every plotted array, the picks, the model's weights and the orientation convention) and
``kernels_<model>.png`` (one panel per stage: normalized mean kernel, picked channel).
"""
from __future__ import annotations

from typing import Annotated, Optional

import numpy as np
import torch
import typer

from hpx_analysis.kernels import NoLongKernelsError, kernel_maps
from hpx_analysis.io.devices import resolve_device
from hpx_analysis.io.weights import load_model

from .common import (DeviceOption, ModelOption, OutOption, SeedOption, default_out, fail, model_specs,
                     stderr_console, user_errors)

__all__ = ["kernels", "parse_int_list"]


def parse_int_list(text: str | None, option: str, length: int | None = None) -> list[int] | None:
    """``"3"`` -> ``[3]``, ``"0,1,-1"`` -> ``[0, 1, -1]``; ``None`` stays ``None``."""
    if text is None or not text.strip():
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        fail(f"{option} expects integers separated by commas, got {text!r}")
    if length is not None and len(values) != length:
        fail(f"{option} expects {length} integers (row,col), got {text!r}")
    return values


def kernels(
    model: ModelOption = None,
    out: OutOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    block: Annotated[str, typer.Option(
        "--block", help="Block shown per stage: one index for every stage or one per stage with long kernels, "
                        "comma-separated; negative counts from the end (-1 = last block).")] = "0",
    channel: Annotated[Optional[str], typer.Option(
        "--channel", help="Hand-picked channel shown next to the mean: one index or one per stage. Default: "
                          "the channel with the most energy (largest sum of squared taps) in that block.")] = None,
    at: Annotated[Optional[str], typer.Option(
        "--at", metavar="ROW,COL", help="H_b only: output pixel for which the 1D kernel is wrapped onto the "
                                        "feature map (default its centre; negative counts from the bottom/right, "
                                        "e.g. 0,0 or -1,-1 for corners).")] = None,
) -> None:
    """Normalized mean kernel weights of each stage's long convolution (after the decay window), and a
    hand-picked channel. H_px: the 2D kernel array itself (K[a,b] weights the input at (i-(a-kh//2),
    j-(b-kw//2)) for output (i,j), so it is point-mirrored w.r.t. the input pixels). H_b: the 1D kernel
    wrapped onto the raster-flattened training feature map for one output pixel (map[r',c'] = weight of
    input pixel (r',c'))."""
    import matplotlib.pyplot as plt

    from hpx_analysis.plotting import plot_kernels

    specs = model_specs(model)
    blocks = parse_int_list(block, "--block")
    channels = parse_int_list(channel, "--channel")
    pos = parse_int_list(at, "--at", length=2)
    out_dir = default_out("kernels", out)
    written = 0
    with user_errors():
        dev = resolve_device(device)
        for spec in specs:
            torch.manual_seed(seed)
            loaded = load_model(spec, device=dev, seed=seed)
            try:
                result = kernel_maps(loaded.model, name=loaded.name, block=blocks, channel=channels, at=pos)
            except NoLongKernelsError as err:
                stderr_console.print(f"[yellow]{loaded.name}:[/yellow] {err}; skipped")
                continue
            out_dir.mkdir(parents=True, exist_ok=True)
            arrays = result.arrays()
            orient = {f"stage{sk.stage}_orientation": np.array(sk.orientation) for sk in result.stages}
            np.savez(out_dir / f"kernels_{loaded.name}.npz", model=np.array(loaded.name),
                     weights=np.array(loaded.weights), **orient, **arrays)
            fig = plot_kernels(result, weights=loaded.weights)
            fig.savefig(out_dir / f"kernels_{loaded.name}.png", dpi=130)
            plt.close(fig)
            picks = ", ".join(f"S{sk.stage + 1}: block {sk.block} channel {sk.channel}"
                              f"{' (top energy)' if sk.channel_auto else ''}" for sk in result.stages)
            stderr_console.print(f"{loaded.name} ({loaded.weights}): {picks}")
            written += 1
    if not written:
        fail("none of the models has long-convolution kernels (H_px / H_b); nothing written")
    stderr_console.print(f"wrote kernels_<model>.npz/.png for {written} model(s) to {out_dir}")
