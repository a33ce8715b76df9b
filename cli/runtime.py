"""``hpx-analyze runtime``: runtime of one token-mixer layer against input resolution (Fig. 2).

Writes into ``--out`` (default ``hpx-out/runtime``): ``runtime.csv`` (one row per mixer,
mode and resolution; see :func:`hpx_analysis.runtime.measure_mixer_runtime`),
``runtime.png`` (log-log) and ``runtime.json`` (settings, device, versions, time taken).
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from enum import Enum
from typing import Annotated, Optional

import typer
from rich.table import Table

from hpx_analysis import runtime as rt
from hpx_analysis.io.devices import resolve_device
from hpx_analysis.settings import Hooks, RunContext

from .common import (
    DeviceOption,
    OutOption,
    SeedOption,
    command_line,
    default_out,
    output_folder,
    print_note,
    progress,
    split_list,
    stdout_console,
    user_errors,
)

__all__ = ["runtime", "Mode"]


class Mode(str, Enum):
    """What is timed (hpx_analysis.runtime.MODE_CHOICES)."""

    forward = "forward"
    backward = "backward"
    both = "both"


def _table(df, title: str) -> Table:
    table = Table(title=title)
    modes = {"forward": "fwd", "forward_backward": "fwd+bwd"}
    for col, justify in (
        ("mixer", "left"),
        ("mode", "left"),
        ("px", "right"),
        ("map", "right"),
        ("p10 ms", "right"),
        ("spread", "right"),
        ("calls", "right"),
        ("status", "left"),
    ):
        table.add_column(col, justify=justify, no_wrap=col != "status", min_width=24 if col == "status" else None)
    for row in df.itertuples(index=False):
        fmt = lambda v: "-" if math.isnan(v) else f"{v:.3g}" if v < 100 else f"{v:.0f}"
        table.add_row(
            rt.MIXER_LABELS.get(row.mixer, row.mixer),
            modes.get(row.mode, row.mode),
            str(row.resolution),
            f"{row.feature_size}x{row.feature_size}",
            fmt(row.p10_ms),
            "-" if math.isnan(row.spread) else f"{row.spread:.3g}x",
            str(row.repeats),
            row.status,
        )
    return table


MixersOption = Annotated[
    str,
    typer.Option(
        "--mixers",
        metavar="NAME[,NAME...]",
        help=f"Comma list of token mixers: {', '.join(rt.MIXERS)} "
        "(hb = bidirectional Hyena, hpx = HyenaPixel, hpx_sep = HyenaPixel with "
        "separable convolutions, sepconv = ConvFormer's local 7x7 mixer).",
    ),
]

ResolutionsOption = Annotated[
    Optional[str],
    typer.Option(
        "--resolutions",
        metavar="PX[,PX...]",
        help="Comma list of input resolutions in px (multiples of 4; patch size 4 gives an "
        "R/4 x R/4 feature map). Default: "
        f"{','.join(map(str, rt.CPU_RESOLUTIONS))} on CPU, "
        f"{rt.CUDA_RESOLUTIONS[0]}..{rt.CUDA_RESOLUTIONS[-1]} in steps of 224 on CUDA.",
    ),
]

ModeOption = Annotated[
    Mode,
    typer.Option(
        "--mode",
        help="forward (eval, no grad, cached kernels), backward (forward + backward as in training) or both.",
    ),
]

RepeatsOption = Annotated[
    Optional[int],
    typer.Option(
        "--repeats",
        min=1,
        help="Fewest timed calls per measurement; more follow until the 10th percentile, which the figure "
        "shows, is stable (see --max-repeats, --time-budget) "
        f"(default {rt.DEFAULT_REPEATS['cpu']} on CPU, "
        f"{rt.DEFAULT_REPEATS['cuda']} on CUDA).",
    ),
]

MaxRepeatsOption = Annotated[
    Optional[int],
    typer.Option(
        "--max-repeats",
        min=1,
        help="Most timed calls per measurement "
        f"(default {rt.DEFAULT_MAX_REPEATS['cpu']} on CPU, {rt.DEFAULT_MAX_REPEATS['cuda']} on CUDA).",
    ),
]

TimeBudgetOption = Annotated[
    Optional[float],
    typer.Option(
        "--time-budget",
        help="Seconds of timed calls after which a measurement stops once it has --repeats calls, stable or not "
        f"(default {rt.DEFAULT_BUDGET_S['cpu']:g} s on CPU, {rt.DEFAULT_BUDGET_S['cuda']:g} s on CUDA).",
    ),
]

WarmupOption = Annotated[
    Optional[int],
    typer.Option(
        "--warmup",
        min=0,
        help="Untimed warm-up calls after the untimed priming call "
        f"(default {rt.DEFAULT_WARMUP['cpu']} on CPU, "
        f"{rt.DEFAULT_WARMUP['cuda']} on CUDA).",
    ),
]

MemoryBudgetGbOption = Annotated[
    Optional[float],
    typer.Option(
        "--memory-budget-gb",
        help="Record attention as out of memory, without running it, where its "
        "(H*W)^2 score matrix alone would exceed this many GiB "
        f"(default {rt.CPU_MEMORY_BUDGET_GIB:g} on CPU, none on CUDA, where real "
        "out-of-memory errors are caught).",
    ),
]

MaxCallSecondsOption = Annotated[
    Optional[float],
    typer.Option(
        "--max-call-seconds",
        help="Skip the larger resolutions of a mixer once one call takes longer than this (default: no limit).",
    ),
]

ThreadsOption = Annotated[
    Optional[int],
    typer.Option("--threads", min=1, help="CPU threads (torch.set_num_threads) for the sweep (default: torch's)."),
]


def runtime(
    mixers: MixersOption = ",".join(rt.MIXERS),
    resolutions: ResolutionsOption = None,
    mode: ModeOption = Mode.both,
    device: DeviceOption = "auto",
    repeats: RepeatsOption = None,
    max_repeats: MaxRepeatsOption = None,
    time_budget: TimeBudgetOption = None,
    warmup: WarmupOption = None,
    memory_budget_gb: MemoryBudgetGbOption = None,
    max_call_seconds: MaxCallSecondsOption = None,
    threads: ThreadsOption = None,
    dim: Annotated[int, typer.Option("--dim", min=1, help="Channels of the mixer layer.")] = 64,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Batch size.")] = 1,
    out: OutOption = None,
    seed: SeedOption = 0,
) -> None:
    """Time one token-mixer layer (attention, H_b, H_px, H_px SC, SepConv) against input
    resolution, forward and forward + backward (the paper's Fig. 2). Writes runtime.csv,
    runtime.png and runtime.json."""
    with user_errors(), ExitStack() as stack:
        settings = rt.RuntimeSettings(
            mixers=tuple(split_list(mixers, "--mixers")),
            resolutions=split_list(resolutions, "--resolutions", int, "whole numbers of pixels"),
            mode=rt.MODE_CHOICES[mode.value],
            dim=dim,
            batch=batch,
            warmup=warmup,
            repeats=repeats,
            max_repeats=max_repeats,
            budget_s=time_budget,
            memory_budget_gib=memory_budget_gb,
            max_call_s=max_call_seconds,
            num_threads=threads,
        )
        dev = resolve_device(device.value)
        out_dir = stack.enter_context(output_folder(default_out("runtime", out)))
        run = RunContext(device=dev, out_dir=out_dir, seed=seed, command=command_line())
        bar = stack.enter_context(progress())
        task = bar.add_task("runtime", total=None)

        def show(row: dict) -> None:
            bar.update(task, description=f"{row['mixer']} {row['mode'].replace('_', '+')} {row['resolution']} px")

        hooks = Hooks(
            progress=lambda n: bar.advance(task, n),
            on_start=lambda _, todo: bar.update(task, total=todo),
            on_batch=show,
            log=print_note,
        )
        result = rt.runtime_job(settings, run, hooks)
    stdout_console.print(_table(result.to_frame(), f"Token mixer runtime ({result.settings['device_description']})"))
    stdout_console.print(f"wrote {out_dir / 'runtime.csv'}, {out_dir / 'runtime.png'}, {out_dir / 'runtime.json'}")
