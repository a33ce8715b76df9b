"""Linear layers of hpx_former_s18 at 1024 px: ``F.linear`` (MKL's sgemm on x86 builds)
against :func:`hpx_analysis.models.fast.fixed_weight.channel_linear` (oneDNN through a 1x1
convolution on x86 CPUs, ``F.linear`` elsewhere) and against the product with a weight
reordered once for oneDNN (:mod:`hpx_analysis.models.fast.packed_linear`, the path of
constant weights; shown where its probe passes).

Prints, per shape (tokens x c_in -> c_out, as in the MLPs, input and output projections of
the four stages, and the 2048-token blocks of the fixed-weight MLP), the best of ``--reps``
timings of each and the GFLOP/s they reach.

usage: python benchmarks/gemm_backends.py [--reps 10] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from hpx_analysis.execution.allocator import reuse_freed_memory
from hpx_analysis.io.devices import cpu_name
from hpx_analysis.models import fast
from hpx_analysis.models.fast import packed_linear
from hpx_analysis.models.fast.fixed_weight import channel_linear

# (tokens, c_in, c_out): stage MLP fc1/fc2 and output projections at 1024 px, and MLP blocks
SHAPES = [
    (65536, 64, 256),
    (65536, 256, 64),
    (65536, 64, 64),
    (65536, 64, 192),
    (16384, 128, 512),
    (16384, 512, 128),
    (16384, 128, 128),
    (16384, 128, 384),
    (4096, 320, 1280),
    (4096, 1280, 320),
    (4096, 320, 320),
    (4096, 320, 960),
    (1024, 512, 2048),
    (1024, 2048, 512),
    (1024, 512, 512),
    (2048, 64, 256),
    (2048, 256, 64),
    (2048, 320, 1280),
    (2048, 1280, 320),
]


def best_ms(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--shapes", type=int, default=None, help="only the first N shapes (a quick check)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    reuse_freed_memory()  # as hpx-analyze runs: fresh mmap pages would be timed otherwise
    packed = fast.available()[packed_linear.PROBE]
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("fast paths: " + ", ".join(f"{name} {state}" for name, state in fast.probe_report().items()))
    print(
        f"{'tokens x c_in -> c_out':>24s} {'F.linear':>16s} {'channel_linear':>16s}  speed-up"
        + (
            f" {'reordered weight':>17s}  speed-up"
            if packed
            else "  (oneDNN linear operators off: no reordered-weight column)"
        )
    )
    for n, c_in, c_out in SHAPES[: args.shapes]:
        x, w = torch.randn(n, c_in), torch.randn(c_out, c_in)
        gflop = 2 * n * c_in * c_out / 1e9
        a = best_ms(lambda: F.linear(x, w), args.reps)
        b = best_ms(lambda: channel_linear(x, w), args.reps)
        torch.testing.assert_close(channel_linear(x, w), F.linear(x, w), rtol=1e-4, atol=1e-3)
        line = (
            f"{n:>9d} x {c_in:4d} -> {c_out:4d}   {a:6.2f} ms {gflop / a * 1e3:4.0f} GF/s"
            f"  {b:6.2f} ms {gflop / b * 1e3:4.0f} GF/s  {a / b:5.2f}x"
        )
        if packed:
            pw = packed_linear.packed_weight(w, "weight", lambda: w)
            c = best_ms(lambda: packed_linear.linear(x, pw), args.reps)
            torch.testing.assert_close(packed_linear.linear(x, pw), F.linear(x, w), rtol=1e-4, atol=1e-3)
            line += f"  {c:6.2f} ms {gflop / c * 1e3:4.0f} GF/s  {b / c:5.2f}x"
        print(line)


if __name__ == "__main__":
    main()
