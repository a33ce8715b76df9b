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
untimed calls, then timed calls until the estimate is stable: at least ``repeats`` and at
most ``max_repeats`` calls, stopping early once the 10th percentile of the times so far has
moved by less than 2 % over the last ``repeats`` calls or the calls have used ``budget_s``
seconds (:func:`adaptive_times`). On a busy machine other work only ever adds time to a call,
so the figure and the checks use that low percentile (``p10_ms``); the median, minimum,
90th percentile, their ratio (``spread = p90 / p10``) and the number of calls are recorded
too, and a sweep with a spread above :data:`SPREAD_WARNING` says so in one line.
On CUDA each call is timed with CUDA events around a synchronised launch.

:func:`monotonicity_violations` lists where a table contradicts what the computation
implies (a forward slower than forward + backward, a mixer faster at a larger resolution);
``runtime.json`` holds that list.

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
import numbers
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
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
    "DEFAULT_MAX_REPEATS",
    "DEFAULT_BUDGET_S",
    "feature_size_for",
    "build_mixer",
    "attention_score_bytes",
    "time_calls",
    "adaptive_times",
    "summarize_times",
    "monotonicity_violations",
    "LOW_PERCENTILE",
    "SPREAD_WARNING",
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
COLUMNS = [
    "mixer",
    "resolution",
    "feature_size",
    "mode",
    "device",
    "median_ms",
    "min_ms",
    "repeats",
    "status",
    "p10_ms",
    "p90_ms",
    "spread",
]

CPU_RESOLUTIONS = (224, 448, 672, 896)
CUDA_RESOLUTIONS = tuple(224 * i for i in range(1, 11))  # 224 .. 2240
CPU_MEMORY_BUDGET_GIB = 4.0
DEFAULT_WARMUP = {"cpu": 1, "cuda": 5}
DEFAULT_REPEATS = {"cpu": 5, "cuda": 20}  # fewest timed calls
DEFAULT_MAX_REPEATS = {"cpu": 100, "cuda": 200}
DEFAULT_BUDGET_S = {"cpu": 2.0, "cuda": 1.0}  # timed seconds per measurement before it stops early
LOW_PERCENTILE = 10.0  # the estimate: other work on the machine only adds time
STABLE_TOLERANCE = 0.02  # the estimate moved by less than this over the last `repeats` calls: stop
SPREAD_WARNING = 1.5  # p90 / p10 above this: the sweep warns that the machine was busy

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


def adaptive_times(
    time_one: Callable[[], float], min_repeats: int, max_repeats: int, budget_s: float | None = None
) -> list[float]:
    """Time calls until the low-percentile estimate is stable.

    Takes at least ``min_repeats`` and at most ``max_repeats`` times; in between it stops once
    the :data:`LOW_PERCENTILE` of the times so far has stayed within :data:`STABLE_TOLERANCE`
    (relative) over the last ``min_repeats`` calls (at least 3), or once the times add up to
    ``budget_s`` seconds.

    Args:
        time_one: makes one timed call and returns its milliseconds.
        min_repeats: fewest calls (>= 1).
        max_repeats: most calls (>= ``min_repeats``).
        budget_s: seconds of timed calls after which no further call is made once
            ``min_repeats`` are done (None: no budget).

    Returns:
        list[float]: the milliseconds of every call, in order.
    """
    if not 1 <= min_repeats <= max_repeats:
        raise ValueError(f"need 1 <= min_repeats <= max_repeats, got {min_repeats} and {max_repeats}")
    window = max(3, min_repeats)
    times: list[float] = []
    estimates: list[float] = []
    while len(times) < max_repeats:
        times.append(float(time_one()))
        estimates.append(float(np.percentile(times, LOW_PERCENTILE)))
        if len(times) < min_repeats:
            continue
        recent = estimates[-window:]
        if len(recent) == window and max(recent) <= min(recent) * (1 + STABLE_TOLERANCE):
            break
        if budget_s is not None and sum(times) >= budget_s * 1e3:
            break
    return times


def summarize_times(times: list[float]) -> dict:
    """The columns of one measured row.

    Args:
        times: milliseconds of the timed calls (at least one).

    Returns:
        dict: ``p10_ms`` (the estimate, :data:`LOW_PERCENTILE`), ``median_ms``, ``min_ms``,
        ``p90_ms``, ``spread`` (``p90 / p10``) and ``repeats`` (the number of calls).
    """
    t = np.asarray(times, dtype=np.float64)
    p10, median, p90 = np.percentile(t, [LOW_PERCENTILE, 50.0, 100.0 - LOW_PERCENTILE])
    return dict(
        p10_ms=float(p10),
        median_ms=float(median),
        min_ms=float(t.min()),
        p90_ms=float(p90),
        spread=float(p90 / p10) if p10 > 0 else math.nan,
        repeats=len(t),
    )


def monotonicity_violations(table: pd.DataFrame, rel_tol: float = 0.1, abs_ms: float = 0.05) -> list[str]:
    """Where a runtime table contradicts the computation beyond noise.

    Two rules on the measured rows (``status == "ok"``), each on the low-percentile estimate
    (``p10_ms``; ``min_ms`` in tables without it): a forward may not take longer than forward
    + backward of the same mixer and resolution, and each (mixer, mode) may not get faster at
    a larger resolution. ``a`` counts as larger than ``b`` when ``a > b * (1 + rel_tol) + abs_ms``.

    Args:
        table: a runtime table (:data:`COLUMNS`).
        rel_tol: relative noise allowance.
        abs_ms: absolute noise allowance in milliseconds (for the tiny timings).

    Returns:
        list[str]: one line per violation (empty: consistent).
    """
    column = "p10_ms" if "p10_ms" in table.columns else "min_ms"
    ok = table[table["status"] == "ok"]
    beyond = lambda a, b: a > b * (1 + rel_tol) + abs_ms  # noqa: E731
    out = []
    for (mixer, r), rows in ok.groupby(["mixer", "resolution"], sort=False):
        ms = dict(zip(rows["mode"], rows[column]))
        if {"forward", "forward_backward"} <= ms.keys() and beyond(ms["forward"], ms["forward_backward"]):
            out.append(
                f"{mixer} at {r} px: forward {ms['forward']:.3g} ms > forward+backward {ms['forward_backward']:.3g} ms"
            )
    for (mixer, mode), rows in ok.groupby(["mixer", "mode"], sort=False):
        rows = rows.sort_values("resolution")
        pairs = zip(rows["resolution"], rows[column])
        for (r0, t0), (r1, t1) in zip(pairs, list(zip(rows["resolution"], rows[column]))[1:]):
            if beyond(t0, t1):
                out.append(f"{mixer} {mode}: {r1} px {t1:.3g} ms < {r0} px {t0:.3g} ms")
    return out


def _whole(value, name: str, least: int) -> int:
    """``value`` as an int when it is a whole number (not a bool) of at least ``least``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be whole numbers, got {value!r} ({type(value).__name__})")
    value = operator.index(value)
    if value < least:
        raise ValueError(f"{name} must be at least {least}, got {value}")
    return value


def _positive(value, name: str) -> None:
    """Raise unless ``value`` is None or a finite real number > 0 (not a bool)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value}")


def _as_tuple(value, name: str) -> tuple:
    if isinstance(value, str):
        value = (value,)
    value = tuple(value)
    if not value:
        raise ValueError(f"{name} must not be empty")
    return value


def _measure_one(
    name: str, resolution: int, mode: str, device: torch.device, settings: RuntimeSettings, seed: int
) -> list[float]:
    """Milliseconds of the timed calls of one (mixer, mode, resolution) with resolved ``settings``."""
    f, dim = feature_size_for(resolution), settings.dim
    torch.manual_seed(seed)
    module = build_mixer(name, resolution, dim).to(device)
    x = torch.randn(settings.batch, f, f, dim, device=device)
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
            grad_out = torch.randn(settings.batch, f, f, dim, device=device)
            params = list(module.parameters())

            def call():
                module(x).backward(grad_out)

            def before():
                x.grad = None
                for p in params:
                    p.grad = None

        # forward: the fast paths of frozen models (cached kernel spectra); training: the plain layers
        with fast_paths(module) if mode == "forward" else contextlib.nullcontext():
            for _ in range(1 + settings.warmup):  # priming call (lazy init, kernel cache) + warm-up
                if before is not None:
                    before()
                call()
            _synchronize(device)
            return adaptive_times(
                lambda: time_calls(call, 1, device, before)[0],
                settings.repeats,
                settings.max_repeats,
                settings.budget_s,
            )
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
        repeats: fewest timed calls per measurement (None: :data:`DEFAULT_REPEATS`).
        max_repeats: most timed calls per measurement (None: :data:`DEFAULT_MAX_REPEATS`,
            at least ``repeats``).
        budget_s: seconds of timed calls after which a measurement stops once it has
            ``repeats`` calls, stable or not (None: :data:`DEFAULT_BUDGET_S`).
        memory_budget_gib: skip attention where its score matrix alone would exceed this;
            None: :data:`CPU_MEMORY_BUDGET_GIB` on CPU, none on CUDA (real OOMs are caught).
        max_call_s: once a (mixer, mode) takes longer than this per call (``p10_ms``), its
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
    max_repeats: int | None = None
    budget_s: float | None = None
    memory_budget_gib: float | None = None
    max_call_s: float | None = None
    num_threads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mixers", _as_tuple(self.mixers, "mixers"))
        object.__setattr__(self, "mode", _as_tuple(self.mode, "mode"))
        if self.resolutions is not None:
            rs = _as_tuple(self.resolutions, "resolutions")
            resolutions = tuple(sorted({_whole(r, "resolutions (px)", PATCH_SIZE) for r in rs}))
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
        wholes = (("dim", 1), ("batch", 1), ("warmup", 0), ("repeats", 1), ("max_repeats", 1), ("num_threads", 1))
        for name, least in wholes:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _whole(value, name, least))
        for name in ("budget_s", "memory_budget_gib", "max_call_s"):
            _positive(getattr(self, name), name)
        if self.repeats is not None and self.max_repeats is not None and self.max_repeats < self.repeats:
            raise ValueError(f"max_repeats ({self.max_repeats}) must be at least repeats ({self.repeats})")

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
        repeats = DEFAULT_REPEATS[kind] if self.repeats is None else self.repeats
        if self.max_repeats is not None:
            repeats = min(repeats, self.max_repeats)
        return self.replace(
            resolutions=self.resolutions or (CUDA_RESOLUTIONS if kind == "cuda" else CPU_RESOLUTIONS),
            warmup=DEFAULT_WARMUP[kind] if self.warmup is None else int(self.warmup),
            repeats=repeats,
            max_repeats=max(repeats, DEFAULT_MAX_REPEATS[kind]) if self.max_repeats is None else self.max_repeats,
            budget_s=DEFAULT_BUDGET_S[kind] if self.budget_s is None else self.budget_s,
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
        DataFrame with :data:`COLUMNS`; the timings are NaN and ``repeats`` 0 where the row
        was not measured (``status`` says why).
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
                if settings.max_call_s is not None and row["p10_ms"] / 1e3 > settings.max_call_s:
                    too_slow = (r, row["p10_ms"] / 1e3)
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
        p10_ms=math.nan,
        p90_ms=math.nan,
        spread=math.nan,
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
        row.update(summarize_times(_measure_one(name, r, mode, dev, settings, seed)))
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
        hooks: ``on_batch(row)`` and ``progress(1)`` after each finished row; ``log`` warns
            (one line each) of a large spread and of contradictions (:func:`monotonicity_violations`).
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
    hooks = hooks or Hooks()
    df = _timed_rows(settings, dev, run.seed, hooks)
    elapsed = time.perf_counter() - start
    _warn(df, hooks)
    used = settings.resolved(dev)
    record = {
        "mixers": list(used.mixers),
        "resolutions": sorted(int(r) for r in df["resolution"].unique()),
        "modes": list(used.mode),
        "device": str(dev),
        "device_description": device_description(dev, used.num_threads),
        **{key: getattr(used, key) for key in ("dim", "batch", "warmup", "repeats", "max_repeats", "budget_s")},
        "memory_budget_gib": used.memory_budget_gib,
        "estimator": f"{LOW_PERCENTILE:g}th percentile of the timed calls (p10_ms)",
        "monotonicity_violations": monotonicity_violations(df),
        "max_call_seconds": used.max_call_s,
        "threads": used.num_threads or torch.get_num_threads(),
        "seed": run.seed,
        "patch_size": PATCH_SIZE,
        "seconds": round(elapsed, 2),
        "versions": versions(),
    }
    return RuntimeResult(df, {**record, **record_header(settings)})


def _warn(df: pd.DataFrame, hooks: Hooks) -> None:
    """One line each, through ``hooks.log``: measurements with a large spread, and contradictions."""
    noisy = df[df["spread"] > SPREAD_WARNING]
    if len(noisy):
        worst = noisy.loc[noisy["spread"].idxmax()]
        hooks.log(
            f"warning: {len(noisy)} of {int((df['status'] == 'ok').sum())} timings varied by more than "
            f"{SPREAD_WARNING:g}x between calls (p90/p10; worst {worst['mixer']} {worst['mode']} "
            f"{worst['resolution']} px: {worst['spread']:.3g}x over {worst['repeats']} calls): the machine was "
            "busy; the 10th percentile (p10_ms) is reported, an idle machine gives steadier figures"
        )
    violations = monotonicity_violations(df)
    if violations:
        hooks.log(
            f"warning: {len(violations)} timing(s) contradict the computation beyond noise "
            f"(runtime.json 'monotonicity_violations'), e.g. {violations[0]}"
        )


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
