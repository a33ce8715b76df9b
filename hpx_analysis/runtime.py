"""Runtime of one token-mixer layer against input resolution (the paper's Fig. 2).

An input resolution ``R`` px with patch size 4 gives an ``R/4 x R/4`` feature map; one
mixer layer with ``dim`` channels (64, the first stage of the S18 models) is timed on it
with batch ``batch``. Global long-convolution mixers are built so that their kernel
covers the whole map: H_px with ``kernel_size = 2 * (R/4) - 1``, H_b with a 1D kernel for
``(R/4)^2`` tokens (``2 * (R/4)^2 - 1`` taps).

What is timed:

- Construction of the mixer and its input is never timed.
- ``forward``: eval mode, gradients off, inside ``fast_paths``: the long-convolution mixers cache their
  kernel and its FFT spectrum per input size, so after the untimed priming call a
  forward is the per-image cost of applying the layer (filter generation excluded).
- ``forward_backward``: train mode, parameters and input require grad; every call
  regenerates the filter through its implicit network and back-propagates through it,
  as in training.

Every (mixer, mode, resolution) gets one untimed priming call, ``warmup`` further
untimed calls, then ``repeats`` timed calls; the median and the minimum are reported.
On CUDA each call is timed with CUDA events around a synchronised launch.

Memory: a real out-of-memory error is recorded as status ``"oom"`` and the sweep goes
on. With a memory budget (always on CPU, default :data:`CPU_MEMORY_BUDGET_GIB`), the
attention layer is not run where its ``(H*W) x (H*W)`` score matrix alone
(``batch * heads * (H*W)^2`` elements, as the published unfused implementation
materialises it) would exceed the budget; such rows read
``"oom (estimated X GiB > budget Y GiB)"``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .execution.out_of_memory import is_out_of_memory
from .io.devices import device_description, resolve_device
from .jobs import record_header
from .models.fast import fast_paths
from .models.mixers import Attention, BidirectionalHyena, HyenaPixel, HyenaPixelSeparable, SepConv
from .settings import Hooks, RunContext, Settings

__all__ = [
    "RuntimeResult",
    "RuntimeSettings",
    "runtime_sweep",
    "runtime_job",
    "MODE_CHOICES",
    "MIXERS",
    "MIXER_LABELS",
    "MODES",
    "COLUMNS",
    "PATCH_SIZE",
    "CPU_RESOLUTIONS",
    "CUDA_RESOLUTIONS",
    "CPU_MEMORY_BUDGET_GIB",
    "DEFAULT_WARMUP",
    "DEFAULT_REPEATS",
    "feature_size_for",
    "build_mixer",
    "attention_score_bytes",
    "time_calls",
    "device_description",
    "measure_mixer_runtime",
]

PATCH_SIZE = 4
MIXERS = ("attention", "hb", "hpx", "hpx_sep", "sepconv")
MIXER_LABELS = {
    "attention": "Attention",
    "hb": "H_b",
    "hpx": "H_px",
    "hpx_sep": "H_px SC",
    "sepconv": "SepConv 7x7 (local)",
}
MODES = ("forward", "forward_backward")
# what the commands call the mode choices
MODE_CHOICES = {"forward": ("forward",), "backward": ("forward_backward",), "both": MODES}
TABLE_FILE, RECORD_FILE = "runtime.csv", "runtime.json"
COLUMNS = ["mixer", "resolution", "feature_size", "mode", "device", "median_ms", "min_ms", "repeats", "status"]

CPU_RESOLUTIONS = (224, 448, 672, 896)
CUDA_RESOLUTIONS = tuple(224 * i for i in range(1, 11))  # 224 .. 2240
CPU_MEMORY_BUDGET_GIB = 4.0
DEFAULT_WARMUP = {"cpu": 1, "cuda": 5}
DEFAULT_REPEATS = {"cpu": 3, "cuda": 20}

# first-stage settings of the S18 models (paper Sec. 4: K = 16 -> 2K + 1 embedding
# channels and 4K filter channels for H_b; H_px stage 1 uses 32 embedding channels)
HB_EMB_DIM, HB_FILTER_ORDER = 33, 64
HPX_EMB_DIM = 32


def feature_size_for(resolution: int) -> int:
    """Side of the feature map that a ``resolution`` px input gives with patch size 4."""
    resolution = int(resolution)
    if resolution < PATCH_SIZE or resolution % PATCH_SIZE:
        raise ValueError(f"resolution must be a positive multiple of the patch size {PATCH_SIZE}, got {resolution}")
    return resolution // PATCH_SIZE


def build_mixer(name: str, resolution: int, dim: int = 64) -> nn.Module:
    """One token-mixer layer for a ``resolution`` px input; global mixers cover the whole map."""
    f = feature_size_for(resolution)
    if name == "attention":
        return Attention(dim)
    if name == "hb":
        return BidirectionalHyena(dim, (f, f), emb_dim=HB_EMB_DIM, filter_order=HB_FILTER_ORDER)
    if name == "hpx":
        return HyenaPixel(dim, kernel_size=2 * f - 1, emb_dim=HPX_EMB_DIM, feature_size=(f, f))
    if name == "hpx_sep":
        return HyenaPixelSeparable(dim, kernel_size=2 * f - 1, feature_size=(f, f))
    if name == "sepconv":
        return SepConv(dim)
    raise ValueError(f"unknown mixer {name!r}; choose from {', '.join(MIXERS)}")


def attention_score_bytes(
    resolution: int, dim: int = 64, batch: int = 1, dtype: torch.dtype = torch.float32, head_dim: int = 32
) -> int:
    """Bytes of the ``batch x heads x N x N`` attention score matrix (``N = (R/4)^2`` tokens)."""
    n = feature_size_for(resolution) ** 2
    heads = max(dim // head_dim, 1)
    return batch * heads * n * n * torch.empty((), dtype=dtype).element_size()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fn: Callable[[], object],
    repeats: int,
    device: torch.device | str = "cpu",
    before: Callable[[], object] | None = None,
) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn`` (``before`` runs untimed ahead of each)."""
    device = torch.device(device)
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        _synchronize(device)
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(float(start.elapsed_time(end)))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def _as_tuple(value, name: str) -> tuple:
    if isinstance(value, str):
        value = (value,)
    value = tuple(value)
    if not value:
        raise ValueError(f"{name} must not be empty")
    return value


def _measure_one(
    name: str,
    resolution: int,
    mode: str,
    device: torch.device,
    dim: int,
    batch: int,
    warmup: int,
    repeats: int,
    seed: int,
) -> list[float]:
    f = feature_size_for(resolution)
    torch.manual_seed(seed)
    module = build_mixer(name, resolution, dim).to(device)
    x = torch.randn(batch, f, f, dim, device=device)
    try:
        if mode == "forward":
            module.eval()

            def call():
                with torch.no_grad():
                    return module(x)

            before = None
        else:
            module.train()
            x.requires_grad_(True)
            grad_out = torch.randn(batch, f, f, dim, device=device)
            params = list(module.parameters())

            def call():
                module(x).backward(grad_out)

            def before():
                x.grad = None
                for p in params:
                    p.grad = None

        # forward: the fast paths of frozen models (cached kernel spectra); training: the plain layers
        with fast_paths(module) if mode == "forward" else contextlib.nullcontext():
            for _ in range(1 + warmup):  # priming call (lazy init, kernel cache) + warm-up
                if before is not None:
                    before()
                call()
            _synchronize(device)
            return time_calls(call, repeats, device, before)
    finally:
        module = x = None  # drop the layer and its input now (a traceback would keep this frame)


def _release(device: torch.device, collect: bool) -> None:
    if collect:  # an exception's traceback keeps the failed call's tensors in reference cycles
        gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class RuntimeSettings(Settings):
    """What a runtime sweep times (see the module docstring).

    Args:
        mixers: names from :data:`MIXERS`.
        resolutions: input sizes in px (multiples of 4); None: :data:`CPU_RESOLUTIONS` on
            CPU, :data:`CUDA_RESOLUTIONS` on CUDA.
        mode: ``"forward"``, ``"forward_backward"`` or several of them.
        dim: channels of the mixer layer.
        batch: batch size.
        warmup: untimed warm-up calls (None: 1 on CPU, 5 on CUDA); one more untimed priming
            call always comes first.
        repeats: timed calls (None: 3 on CPU, 20 on CUDA).
        memory_budget_gib: skip attention where its score matrix alone would exceed this;
            None: :data:`CPU_MEMORY_BUDGET_GIB` on CPU, none on CUDA (real OOMs are caught).
        max_call_s: once a (mixer, mode) takes longer than this per call (median), its
            larger resolutions are skipped (status ``"skipped: ..."``); None: no limit.
        num_threads: CPU threads for the sweep (``torch.set_num_threads``, restored
            afterwards); None: leave torch's setting.
    """

    mixers: tuple[str, ...] = MIXERS
    resolutions: tuple[int, ...] | None = None
    mode: tuple[str, ...] = MODES
    dim: int = 64
    batch: int = 1
    warmup: int | None = None
    repeats: int | None = None
    memory_budget_gib: float | None = None
    max_call_s: float | None = None
    num_threads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mixers", _as_tuple(self.mixers, "mixers"))
        object.__setattr__(self, "mode", _as_tuple(self.mode, "mode"))
        if self.resolutions is not None:
            resolutions = tuple(sorted({int(r) for r in _as_tuple(self.resolutions, "resolutions")}))
            object.__setattr__(self, "resolutions", resolutions)
        self._check()

    def _check(self) -> None:
        for m in self.mixers:
            if m not in MIXERS:
                raise ValueError(f"unknown mixer {m!r}; choose from {', '.join(MIXERS)}")
        for m in self.mode:
            if m not in MODES:
                raise ValueError(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
        for r in self.resolutions or ():
            feature_size_for(r)
        checks = [
            (self.warmup is None or self.warmup >= 0, f"warmup must be >= 0, got {self.warmup}"),
            (self.repeats is None or self.repeats >= 1, f"repeats must be >= 1, got {self.repeats}"),
            (self.dim >= 1 and self.batch >= 1, "dim and batch must be positive"),
            (
                self.memory_budget_gib is None or self.memory_budget_gib > 0,
                f"memory budget must be positive, got {self.memory_budget_gib}",
            ),
            (self.max_call_s is None or self.max_call_s > 0, f"max_call_s must be positive, got {self.max_call_s}"),
            (self.num_threads is None or self.num_threads >= 1, f"num_threads must be >= 1, got {self.num_threads}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def resolved(self, device: torch.device) -> RuntimeSettings:
        """These settings with the device's defaults filled in (resolutions, warm-up,
        repeats, memory budget; the thread count stays as given).

        Args:
            device: the device the sweep runs on.

        Returns:
            RuntimeSettings: no None left but ``max_call_s`` and ``num_threads`` (and the
            memory budget on CUDA).
        """
        kind = "cuda" if torch.device(device).type == "cuda" else "cpu"
        return self.replace(
            resolutions=self.resolutions or (CUDA_RESOLUTIONS if kind == "cuda" else CPU_RESOLUTIONS),
            warmup=DEFAULT_WARMUP[kind] if self.warmup is None else int(self.warmup),
            repeats=DEFAULT_REPEATS[kind] if self.repeats is None else int(self.repeats),
            memory_budget_gib=self.memory_budget_gib
            if self.memory_budget_gib is not None or kind == "cuda"
            else CPU_MEMORY_BUDGET_GIB,
        )


def _run_of(run: RunContext | None, device, seed: int | None) -> RunContext:
    """``run``, or one on ``device`` (``"auto"`` by default) with ``seed``."""
    if run is not None:
        if device is not None or seed is not None:
            raise TypeError("give the device and seed either in run or as keywords, not both")
        return run
    return RunContext(device=torch.device(resolve_device(device or "auto")), seed=seed or 0)


def measure_mixer_runtime(*args, **kwargs) -> pd.DataFrame:
    """Time one token-mixer layer per (mixer, mode, resolution); see the module docstring.

    Args:
        *args: as :func:`runtime_sweep`.
        **kwargs: as :func:`runtime_sweep`.

    Returns:
        DataFrame with :data:`COLUMNS`; ``median_ms``/``min_ms`` are NaN and ``repeats`` 0
        where the row was not measured (``status`` says why).
    """
    return runtime_sweep(*args, **kwargs).table


def _timed_rows(settings: RuntimeSettings, dev: torch.device, seed: int, hooks: Hooks) -> pd.DataFrame:
    """The sweep's table with the CPU threads of ``settings`` (restored afterwards)."""
    threads_before = torch.get_num_threads()
    if settings.num_threads is not None:
        torch.set_num_threads(int(settings.num_threads))
    try:
        rows = _sweep(settings.resolved(dev), dev, seed, hooks)
    finally:
        torch.set_num_threads(threads_before)
    return pd.DataFrame(rows, columns=COLUMNS)


def _sweep(settings: RuntimeSettings, dev: torch.device, seed: int, hooks: Hooks) -> list[dict]:
    """Every row of a sweep with resolved ``settings``."""
    rows = []
    for name in settings.mixers:
        for m in settings.mode:
            too_slow = None  # (resolution, seconds) that crossed max_call_s
            for r in settings.resolutions:
                row = _row(name, r, m, dev, settings, seed, too_slow)
                if settings.max_call_s is not None and row["median_ms"] / 1e3 > settings.max_call_s:
                    too_slow = (r, row["median_ms"] / 1e3)
                rows.append(row)
                hooks.on_batch(row)
                hooks.progress(1)
    return rows


def _row(name: str, r: int, mode: str, dev: torch.device, settings: RuntimeSettings, seed: int, too_slow) -> dict:
    """One (mixer, mode, resolution) row: measured, or why not (over budget, too slow, OOM)."""
    row = dict(
        mixer=name,
        resolution=r,
        feature_size=feature_size_for(r),
        mode=mode,
        device=str(dev),
        median_ms=math.nan,
        min_ms=math.nan,
        repeats=0,
        status="ok",
    )
    budget = settings.memory_budget_gib
    need = attention_score_bytes(r, settings.dim, settings.batch) / 2**30 if name == "attention" else 0.0
    if budget is not None and need > budget:
        row["status"] = f"oom (estimated {need:.3g} GiB > budget {budget:g} GiB)"
        return row
    if too_slow is not None:
        row["status"] = (
            f"skipped: {too_slow[0]} px already took {too_slow[1]:.1f} s per call"
            f" (> max_call_s {settings.max_call_s:g} s)"
        )
        return row
    failed = False
    try:
        s = settings
        times = _measure_one(name, r, mode, dev, s.dim, s.batch, s.warmup, s.repeats, seed)
        row.update(median_ms=statistics.median(times), min_ms=min(times), repeats=len(times))
    except Exception as err:  # noqa: BLE001 - only out-of-memory is recorded
        failed = True
        if not is_out_of_memory(err):
            raise
        row["status"] = "oom"
    finally:
        _release(dev, collect=failed)
    return row


@dataclass
class RuntimeResult:
    """A runtime sweep: ``table`` (:data:`COLUMNS`, one row per mixer, mode and resolution) and
    ``settings`` (what was measured, on which device, defaults resolved, seconds taken,
    versions). Files: ``runtime.csv`` and ``runtime.json``."""

    table: pd.DataFrame
    settings: dict = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        return self.table

    def save(self, out_dir: str | Path) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(out_dir / TABLE_FILE, index=False)
        (out_dir / RECORD_FILE).write_text(json.dumps(self.settings, indent=1))
        return out_dir

    @classmethod
    def load(cls, out_dir: str | Path) -> RuntimeResult:
        out_dir = Path(out_dir)
        return cls(pd.read_csv(out_dir / TABLE_FILE), json.loads((out_dir / RECORD_FILE).read_text()))


def runtime_sweep(
    settings: RuntimeSettings | None = None,
    run: RunContext | None = None,
    hooks: Hooks | None = None,
    *,
    device: str | torch.device | None = None,
    seed: int | None = None,
    **overrides,
) -> RuntimeResult:
    """Time one token-mixer layer per (mixer, mode, resolution) and record how (defaults resolved).

    Args:
        settings: what is timed (default :class:`RuntimeSettings`).
        run: the device and seed.
        hooks: ``on_batch(row)`` and ``progress(1)`` after each finished row.
        device: shortcut for ``run``'s device; default auto.
        seed: shortcut for ``run``'s seed; default 0.
        **overrides: settings fields replacing those of ``settings`` (e.g. ``mode="forward"``).

    Returns:
        RuntimeResult: the table and ``runtime.json``'s record.
    """
    from .versions import versions

    settings = RuntimeSettings.from_overrides(settings, **overrides)
    run = _run_of(run, device, seed)
    dev = torch.device(resolve_device(run.device))
    start = time.perf_counter()
    df = _timed_rows(settings, dev, run.seed, hooks or Hooks())
    elapsed = time.perf_counter() - start
    used = settings.resolved(dev)
    record = {
        "mixers": list(used.mixers),
        "resolutions": sorted(int(r) for r in df["resolution"].unique()),
        "modes": list(used.mode),
        "device": str(dev),
        "device_description": device_description(dev, used.num_threads),
        **{key: getattr(used, key) for key in ("dim", "batch", "warmup", "repeats", "memory_budget_gib")},
        "max_call_seconds": used.max_call_s,
        "threads": used.num_threads or torch.get_num_threads(),
        "seed": run.seed,
        "patch_size": PATCH_SIZE,
        "seconds": round(elapsed, 2),
        "versions": versions(),
    }
    return RuntimeResult(df, {**record, **record_header(settings)})


def runtime_job(
    settings: RuntimeSettings | None = None, run: RunContext | None = None, hooks: Hooks | None = None
) -> RuntimeResult:
    """The runtime sweep written as ``hpx-analyze runtime`` writes it.

    Args:
        settings: what is timed (default :class:`RuntimeSettings`).
        run: device, seed and output folder (``runtime.csv``, ``runtime.json``,
            ``runtime.png``; None: nothing written).
        hooks: ``on_batch(row)`` and ``progress(1)`` after each row, ``on_start(0, rows)`` first.

    Returns:
        RuntimeResult: the table and record.
    """
    settings, run, hooks = settings or RuntimeSettings(), run or RunContext(), hooks or Hooks()
    used = settings.resolved(torch.device(resolve_device(run.device)))
    hooks.on_start(0, len(used.mixers) * len(used.mode) * len(used.resolutions))
    result = runtime_sweep(settings, run, hooks)
    if run.out_dir is not None and run.is_main:
        from .plotting.files import save_runtime_figure

        result.save(run.out_dir)
        save_runtime_figure(result, run.out_dir)
    return result
