"""Time and memory of the interaction analysis: per model, all blocks, 256 sampled queries
per block and three map queries, random init, at 224 px.

Each model runs in its own process so that its peak memory (resident set) is its own. The
first image's time includes the setup (token geometry: one partial forward per stage); the
time per image is the mean over the following images, as wall time and as the process's CPU
time (user + system, all threads; on a shared machine CPU time / threads is closer to what an
idle machine gives than the wall time).

usage: python benchmarks/interactions_benchmark.py [--models hpx_former_s18,convformer_s18,deit_small_patch16_224]
       [--size 224] [--images 3] [--queries 256] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

DEFAULT_MODELS = "hpx_former_s18,convformer_s18,deit_small_patch16_224"


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def measure(name: str, size: int, images: int, queries: int, device: str) -> dict:
    """One model's numbers: setup and per-image seconds, resident memory before and at peak."""
    import hpx_analysis  # noqa: F401
    from hpx_analysis.interactions import interaction_maps
    from hpx_analysis.io.weights import load_model
    from hpx_analysis.settings import Hooks, RunContext

    model = load_model(f"{name}=random", device=device).model
    x = torch.randn(images, 3, size, size, generator=torch.Generator().manual_seed(0))
    rss_model = _rss_mib()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stamps = [(time.perf_counter(), time.process_time())]

    def tick(_n: int) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        stamps.append((time.perf_counter(), time.process_time()))

    run = RunContext(device=torch.device(device))
    result = interaction_maps(model, x, size=size, queries_sampled=queries, run=run, hooks=Hooks(progress=tick))
    steps = [b[0] - a[0] for a, b in zip(stamps, stamps[1:])]
    cpu_steps = [b[1] - a[1] for a, b in zip(stamps, stamps[1:])]
    per_image = sum(steps[1:]) / max(len(steps) - 1, 1)
    cpu_per_image = sum(cpu_steps[1:]) / max(len(cpu_steps) - 1, 1)
    out = {
        "model": name,
        "blocks": len(result.blocks),
        "first_image_s": round(steps[0], 2),
        "per_image_s": round(per_image, 2),
        "cpu_per_image_s": round(cpu_per_image, 2),
        "rss_model_mib": round(rss_model),
        "rss_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": torch.get_num_threads(),
    }
    if device == "cuda":
        out["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=3, help="at least 2: the first includes the setup")
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child process: one model
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.models, args.size, args.images, args.queries, args.device)))
        return 0
    print(
        f"{'model':<28}{'blocks':>7}{'first s':>9}{'s/image':>9}{'CPU s/image':>12}"
        f"{'RSS model MiB':>15}{'RSS peak MiB':>14}"
    )
    for name in args.models.split(","):
        cmd = [sys.executable, __file__, "--one", "--models", name, "--size", str(args.size)]
        cmd += ["--images", str(args.images), "--queries", str(args.queries), "--device", args.device]
        cmd += ["--threads", str(args.threads)] if args.threads else []
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            print(f"{name}: failed\n{done.stderr[-2000:]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{r['model']:<28}{r['blocks']:>7}{r['first_image_s']:>9}{r['per_image_s']:>9}{r['cpu_per_image_s']:>12}"
            f"{r['rss_model_mib']:>15}{r['rss_peak_mib']:>14}"
            + (f"  CUDA peak {r['cuda_peak_mib']} MiB" if "cuda_peak_mib" in r else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
