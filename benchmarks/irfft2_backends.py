"""2D inverse real FFTs of hpx_former_s18's long convolutions at 1024 px on the CPU:
``torch.fft.irfftn`` against one MKL call (:func:`hpx_analysis.models.fast.mkl_irfft2.irfft2`).

Prints, per stage (channels and FFT size of one image's long convolution, see
:func:`hpx_analysis.models.fft_conv.fft_size`), the median of ``--reps`` timings of each
and the largest difference relative to the largest value of ``irfftn``'s output.

usage: python benchmarks/irfft2_backends.py [--reps 15] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hpx_analysis.execution.allocator import reuse_freed_memory
from hpx_analysis.io.devices import cpu_name
from hpx_analysis.models.fast import mkl_irfft2

# (channels, FFT height, FFT width) of the four stages' long convolutions at 1024 px
SHAPES = [(64, 320, 320), (128, 160, 160), (320, 80, 80), (512, 40, 40)]


def median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    reuse_freed_memory()  # as hpx-analyze runs
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    if not mkl_irfft2.available():
        print("MKL's 2D inverse FFT is off in this PyTorch build (see the warning): irfft2 falls back to irfftn")
        return
    print(f"{'channels x FFT size':>22s} {'irfftn':>10s} {'MKL 2D':>10s}  speed-up  max diff")
    torch.manual_seed(0)
    for c, fh, fw in SHAPES:
        spectrum = torch.fft.rfftn(torch.randn(1, c, fh, fw), dim=(-2, -1))
        ref = torch.fft.irfftn(spectrum, s=(fh, fw), dim=(-2, -1))
        diff = float((mkl_irfft2.irfft2(spectrum, (fh, fw)) - ref).abs().max() / ref.abs().max())
        with mkl_irfft2.torch_fft_only():
            t_torch = median_ms(lambda: mkl_irfft2.irfft2(spectrum, (fh, fw)), args.reps)
        t_mkl = median_ms(lambda: mkl_irfft2.irfft2(spectrum, (fh, fw)), args.reps)
        print(f"{f'{c} x {fh} x {fw}':>22s} {t_torch:8.2f}ms {t_mkl:8.2f}ms  {t_torch / t_mkl:7.2f}x  {diff:.1e}")


if __name__ == "__main__":
    main()
