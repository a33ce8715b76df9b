"""Token-mixer runtime against input resolution (the paper's Fig. 2): the default sweep.

    .venv/bin/python benchmarks/mixer_runtime.py                 # default CPU sweep
    .venv/bin/python benchmarks/mixer_runtime.py --device cuda   # 224..2240 px on a GPU

Prints the device, the load of the machine and the runtime (ms, the 10th percentile of
5-100 timed calls; see :func:`hpx_analysis.runtime.adaptive_times`) of one token-mixer
layer (64 channels, batch 1, patch size 4) per mixer, mode and resolution, with the
status where a resolution was not measured, the largest spread between calls and any
contradiction of the computation. ``--csv`` also keeps the raw rows.
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd

from hpx_analysis import runtime as rt


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mixer x mode rows, resolution columns: p10 ms, or the status where not measured."""

    def cell(row) -> str:
        if row.status == "ok":
            return f"{row.p10_ms:.3g}" if row.p10_ms < 100 else f"{row.p10_ms:.0f}"
        return "OOM" if row.status.startswith("oom") else "skipped"

    table = df.assign(
        cell=[cell(r) for r in df.itertuples(index=False)], label=[rt.MIXER_LABELS.get(m, m) for m in df["mixer"]]
    )
    table = table.pivot(index=["label", "mode"], columns="resolution", values="cell")
    order = [(rt.MIXER_LABELS.get(m, m), md) for m in dict.fromkeys(df["mixer"]) for md in dict.fromkeys(df["mode"])]
    table = table.reindex([k for k in order if k in table.index])
    table.columns = [f"{c} px" for c in table.columns]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--csv", default=None, help="also write the raw rows to this CSV file")
    args = parser.parse_args()

    load_before = _load()
    start = time.perf_counter()
    df = rt.measure_mixer_runtime(device=args.device, num_threads=args.threads)
    elapsed = time.perf_counter() - start
    print(f"device: {rt.device_description(df['device'].iloc[0], args.threads)}")
    print(f"1-min load average before / after the sweep: {load_before} / {_load()}")
    print(
        f"one mixer layer, 64 channels, batch 1, patch size 4; 10th percentile of "
        f"{int(df['repeats'].min())}-{int(df['repeats'].max())} timed calls (ms); sweep took {elapsed:.0f} s; "
        f"largest spread (p90/p10) {df['spread'].max():.2f}x"
    )
    print(summary_table(df).to_string())
    notes = sorted({s for s in df["status"] if s != "ok"})
    for note in notes:
        rows = df[df["status"] == note]
        where = ", ".join(
            f"{rt.MIXER_LABELS.get(m, m)} {md} {r} px"
            for m, md, r in zip(rows["mixer"], rows["mode"], rows["resolution"])
        )
        print(f"- {note}: {where}")
    for line in rt.monotonicity_violations(df):
        print(f"- contradicts the computation: {line}")
    if args.csv:
        df.to_csv(args.csv, index=False)


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


if __name__ == "__main__":
    main()
