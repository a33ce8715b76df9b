"""``hpx-analyze runtime``: runtime of one token-mixer layer against input resolution (Fig. 2).

Writes into ``--out`` (default ``figures/runtime``): ``runtime.csv`` (one row per mixer,
mode and resolution; see :func:`hpx_analysis.runtime.measure_mixer_runtime`),
``runtime.png`` (log-log) and ``runtime.json`` (settings, device, versions, time taken).
"""
from __future__ import annotations

import json
import math
import platform
import time
from typing import Annotated, Optional

import pandas as pd
import torch
import typer
from rich.console import Console
from rich.table import Table

from hpx_analysis import runtime as rt

from .common import DeviceOption, OutOption, SeedOption, default_out, fail, progress, user_errors

__all__ = ["runtime", "parse_list", "MODE_CHOICES"]

MODE_CHOICES = {"forward": ("forward",), "backward": ("forward_backward",), "both": rt.MODES}


def parse_list(text: str, option: str) -> list[str]:
    """Split a comma list (``"224, 448"``); an empty list fails."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        fail(f"{option} needs at least one value")
    return items


def _resolutions(text: str | None) -> list[int] | None:
    if text is None:
        return None
    values = []
    for item in parse_list(text, "--resolutions"):
        try:
            values.append(int(item))
        except ValueError:
            fail(f"--resolutions: {item!r} is not a whole number of pixels")
    return values


def _table(df, title: str) -> Table:
    table = Table(title=title)
    modes = {"forward": "fwd", "forward_backward": "fwd+bwd"}
    for col, justify in (("mixer", "left"), ("mode", "left"), ("px", "right"), ("map", "right"),
                         ("median ms", "right"), ("min ms", "right"), ("status", "left")):
        table.add_column(col, justify=justify, no_wrap=col != "status", min_width=24 if col == "status" else None)
    for row in df.itertuples(index=False):
        fmt = (lambda v: "-" if math.isnan(v) else f"{v:.3g}" if v < 100 else f"{v:.0f}")
        table.add_row(rt.MIXER_LABELS.get(row.mixer, row.mixer), modes.get(row.mode, row.mode), str(row.resolution),
                      f"{row.feature_size}x{row.feature_size}", fmt(row.median_ms), fmt(row.min_ms), row.status)
    return table


def runtime(
    mixers: Annotated[str, typer.Option(
        "--mixers", help=f"Comma list of token mixers: {', '.join(rt.MIXERS)} "
                         "(hb = bidirectional Hyena, hpx = HyenaPixel, hpx_sep = HyenaPixel with "
                         "separable convolutions, sepconv = ConvFormer's local 7x7 mixer).")] = ",".join(rt.MIXERS),
    resolutions: Annotated[Optional[str], typer.Option(
        "--resolutions", help="Comma list of input resolutions in px (multiples of 4; patch size 4 gives an "
                              "R/4 x R/4 feature map). Default: "
                              f"{','.join(map(str, rt.CPU_RESOLUTIONS))} on CPU, "
                              f"{rt.CUDA_RESOLUTIONS[0]}..{rt.CUDA_RESOLUTIONS[-1]} in steps of 224 on CUDA.")] = None,
    mode: Annotated[str, typer.Option(
        "--mode", help="forward (eval, no grad, cached kernels), backward (forward + backward as in "
                       "training) or both.")] = "both",
    device: DeviceOption = "auto",
    repeats: Annotated[Optional[int], typer.Option(
        "--repeats", min=1, help="Timed calls per measurement; the median is reported "
                                 f"(default {rt.DEFAULT_REPEATS['cpu']} on CPU, "
                                 f"{rt.DEFAULT_REPEATS['cuda']} on CUDA).")] = None,
    warmup: Annotated[Optional[int], typer.Option(
        "--warmup", min=0, help="Untimed warm-up calls after the untimed priming call "
                                f"(default {rt.DEFAULT_WARMUP['cpu']} on CPU, "
                                f"{rt.DEFAULT_WARMUP['cuda']} on CUDA).")] = None,
    memory_budget_gb: Annotated[Optional[float], typer.Option(
        "--memory-budget-gb", help="Record attention as out of memory, without running it, where its "
                                   "(H*W)^2 score matrix alone would exceed this many GiB "
                                   f"(default {rt.CPU_MEMORY_BUDGET_GIB:g} on CPU, none on CUDA, where real "
                                   "out-of-memory errors are caught).")] = None,
    max_call_seconds: Annotated[Optional[float], typer.Option(
        "--max-call-seconds", help="Skip the larger resolutions of a mixer once one call takes longer than "
                                   "this (default: no limit).")] = None,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=1, help="CPU threads (torch.set_num_threads) for the sweep (default: torch's).")] = None,
    dim: Annotated[int, typer.Option("--dim", min=1, help="Channels of the mixer layer.")] = 64,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Batch size.")] = 1,
    out: OutOption = None,
    seed: SeedOption = 0,
) -> None:
    """Time one token-mixer layer (attention, H_b, H_px, H_px SC, SepConv) against input
    resolution, forward and forward + backward (the paper's Fig. 2). Writes runtime.csv,
    runtime.png and runtime.json."""
    if mode not in MODE_CHOICES:
        fail(f"--mode must be one of {', '.join(MODE_CHOICES)}, got {mode!r}")
    names = parse_list(mixers, "--mixers")
    res = _resolutions(resolutions)
    out_dir = default_out("runtime", out)
    with user_errors():
        from hpx_analysis.io.devices import resolve_device

        dev = resolve_device(device)
        unknown = [n for n in names if n not in rt.MIXERS]
        if unknown:
            fail(f"unknown mixer {unknown[0]!r}; choose from {', '.join(rt.MIXERS)}")
        for r in res or ():
            rt.feature_size_for(r)
        kind = "cuda" if dev.type == "cuda" else "cpu"
        n_res = len(set(res)) if res is not None else len(rt.CUDA_RESOLUTIONS if kind == "cuda"
                                                            else rt.CPU_RESOLUTIONS)
        total = len(names) * len(MODE_CHOICES[mode]) * n_res
        start = time.perf_counter()
        with progress() as bar:
            task = bar.add_task("runtime", total=total)

            def advance(row: dict) -> None:
                bar.update(task, advance=1,
                           description=f"{row['mixer']} {row['mode'].replace('_', '+')} {row['resolution']} px")

            df = rt.measure_mixer_runtime(
                mixers=names, resolutions=res, mode=MODE_CHOICES[mode], device=dev, dim=dim, batch=batch,
                warmup=warmup, repeats=repeats, memory_budget_gib=memory_budget_gb, seed=seed,
                max_call_s=max_call_seconds, num_threads=threads, progress=advance)
        elapsed = time.perf_counter() - start
    described = rt.device_description(dev, threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_dir / "runtime.csv", index=False)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hpx_analysis.plotting.runtime import plot_runtime

    fig = plot_runtime(df, title=f"Token mixer runtime, batch {batch}, {dim} ch\n{described}")
    fig.savefig(out_dir / "runtime.png", dpi=150)
    plt.close(fig)

    budget = memory_budget_gb if memory_budget_gb is not None or kind == "cuda" else rt.CPU_MEMORY_BUDGET_GIB
    settings = dict(mixers=names, resolutions=sorted(int(r) for r in df["resolution"].unique()),
                    modes=list(MODE_CHOICES[mode]), device=str(dev), device_description=described, dim=dim,
                    batch=batch, warmup=rt.DEFAULT_WARMUP[kind] if warmup is None else warmup,
                    repeats=rt.DEFAULT_REPEATS[kind] if repeats is None else repeats, memory_budget_gib=budget,
                    max_call_seconds=max_call_seconds, threads=threads or torch.get_num_threads(), seed=seed,
                    patch_size=rt.PATCH_SIZE, seconds=round(elapsed, 2),
                    versions={"torch": torch.__version__, "pandas": pd.__version__,
                              "python": platform.python_version()})
    (out_dir / "runtime.json").write_text(json.dumps(settings, indent=1))
    Console().print(_table(df, f"Token mixer runtime ({described})"))
    Console().print(f"wrote {out_dir / 'runtime.csv'}, {out_dir / 'runtime.png'}, {out_dir / 'runtime.json'}")
