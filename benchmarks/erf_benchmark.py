"""ERF speed and memory: this project's ``compute_erf`` against the published implementation.

Each configuration runs in a fresh subprocess so that its peak memory is its own:
CPU peak = ``VmHWM`` of that process (/proc/self/status), CUDA peak =
``torch.cuda.max_memory_allocated`` during the timed ERF passes (weights included). Per-image time is the mean over
``--images`` timed images after an untimed warm-up (one image for the published code, one
batch of the timed batch size for ours, so that per-shape set-up such as cuFFT plans stays
out of the timing). The images are the bundled scikit-image photographs, resized to
``--size``; more images than there are photographs repeat them in order.

- ``published``: a stand-alone re-implementation of the whole published network, op by op
  (``published_metaformer.py``: channels-last layout with the published permutes and
  copies, hand-written layer norms in the down-sampling layers, StarReLU through autograd,
  filter network and window evaluated on every forward, the published 2h x 2w float32
  FFT convolution), loaded strictly with the model's weights, parameters requiring grad,
  one image at a time, the gradient taken as in RepLKNet's ERF script.
- ``ours``: :func:`hpx_analysis.erf.compute_erf` (frozen parameters, cached kernel
  spectrum, minimal exact FFT sizes) at each ``--batch-sizes`` value, in a process set up
  as ``hpx-analyze`` sets itself up: glibc keeps freed buffers for reuse
  (:func:`hpx_analysis.execution.allocator.reuse_freed_memory`). ``--precision tf32`` or ``bf16``
  (CUDA) times ours in TF32 or under autocast; the deviation from float32, measured on the
  warm-up batch, is printed. ``--compile`` times ours with its blocks compiled
  (``torch.compile``); the compiling falls in the warm-up. Where a batch of ours does not
  fit in the device's memory, it is split (see ``maps_that_fit``) and the number of images
  per pass that fitted is printed.

The published baseline runs twice on the CPU: with the C allocator's defaults (how the
published code runs) and with the same heap-reuse setting as ours, so that the gain of
the setting and the gain of the implementation can be told apart.

The two ERF matrices are compared at the end (they must agree to float32 tolerance).

usage: python benchmarks/erf_benchmark.py [--model hpx_former_s18] [--size 1024] [--images 3]
                                          [--batch-sizes 1] [--device auto] [--grad-checkpointing]
                                          [--published-batch-sizes 1] [--precision fp32] [--compile]
                                          [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def peak_rss_gb() -> float | None:
    """This process's peak resident memory (VmHWM) in GB; None where /proc is missing."""
    try:
        status = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    hwm = [int(line.split()[1]) for line in status if line.startswith("VmHWM:")]
    return hwm[0] / 1024**2 if hwm else None


def process_cpu_s() -> float:
    """User + system CPU seconds of this process (all threads)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ----------------------------------------------------------------------------- worker
def _published_erf_batch(model, x):
    """RepLKNet's get_input_grad for a batch ``(B, 3, H, W)``: centre units, autograd.grad
    w.r.t. the input; returns the sum of the B per-image maps (the images do not interact)."""
    import torch

    samples = x.clone().requires_grad_(True)
    outputs = model.forward_features(samples)
    h, w = outputs.shape[-2:]
    central_point = torch.relu(outputs[:, :, h // 2, w // 2]).sum()
    (grad,) = torch.autograd.grad(central_point, samples)
    return torch.relu(grad).sum((0, 1)).double().cpu().numpy()


def worker(args) -> None:
    if args.heap_reuse:
        from hpx_analysis.execution.allocator import reuse_freed_memory

        reuse_freed_memory()
    import timm
    import torch

    import hpx_analysis  # noqa: F401
    from hpx_analysis.erf import compute_erf
    from hpx_analysis.io.images import erf_transform, list_images, load_rgb

    sys.path.insert(0, str(HERE))
    from published_metaformer import published_style_copy

    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = timm.create_model(args.model).eval()
    if args.worker == "published":
        model = published_style_copy(model)
    elif args.grad_checkpointing:
        model.set_grad_checkpointing(True)
    model.to(device)
    transform = erf_transform(args.size)
    items = list_images(None, args.images + 1)
    photos = [transform(load_rgb(i.path)) for i in items]
    if not photos:
        raise SystemExit("no bundled photographs found (is scikit-image installed?)")
    tensors = [photos[i % len(photos)] for i in range(args.images + 1)]
    warmup, timed = tensors[0], tensors[1:]

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def reset_peak():  # CUDA peak of the timed passes (the warm-up may include a float32 check pass)
        if cuda:
            torch.cuda.reset_peak_memory_stats()

    cpu0, deviation, images_per_pass = None, None, None
    t0 = time.perf_counter()
    if args.worker == "published":
        _published_erf_batch(model, torch.stack(([warmup] + timed)[: args.batch_size]).to(device))
        sync()
        first = time.perf_counter() - t0
        reset_peak()
        total = None
        cpu0 = process_cpu_s()
        t0 = time.perf_counter()
        for i in range(0, len(timed), args.batch_size):
            g = _published_erf_batch(model, torch.stack(timed[i : i + args.batch_size]).to(device))
            total = g if total is None else total + g
        sync()
        elapsed = time.perf_counter() - t0
        matrix = total / len(timed)
    else:
        warm = compute_erf(
            model,
            ([warmup] + timed)[: args.batch_size],
            batch_size=args.batch_size,
            device=device,
            precision=args.precision,
            compile_blocks=args.compile,
        )
        sync()
        first = time.perf_counter() - t0
        deviation = warm.precision_deviation
        reset_peak()
        cpu0 = process_cpu_s()
        t0 = time.perf_counter()
        result = compute_erf(
            model,
            timed,
            batch_size=args.batch_size,
            device=device,
            precision=args.precision,
            check_precision=False,
            compile_blocks=args.compile,
        )
        sync()
        elapsed = time.perf_counter() - t0
        matrix, images_per_pass = result.matrix, result.images_per_pass
    record = {
        "config": args.worker
        + (
            ""
            if args.worker == "published"
            else ("+ckpt" if args.grad_checkpointing else "")
            + ("+compile" if args.compile else "")
            + ("" if args.precision == "fp32" else f"+{args.precision}")
        ),
        "precision_deviation": deviation,
        "heap_reuse": bool(args.heap_reuse),
        "batch_size": args.batch_size,
        "images_per_pass": images_per_pass,
        "model": args.model,
        "size": args.size,
        "images": len(timed),
        "device": str(device),
        "per_image_s": elapsed / len(timed),
        "first_image_s": first,
        "cpu_s_per_image": (process_cpu_s() - cpu0) / len(timed),
        "peak_gb": (torch.cuda.max_memory_allocated() / 1024**3) if cuda else peak_rss_gb(),
        "peak_kind": "torch.cuda.max_memory_allocated" if cuda else "process VmHWM",
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
    }
    np.save(args.matrix, matrix)
    Path(args.result).write_text(json.dumps(record))


# ----------------------------------------------------------------------------- driver
def _median(values: list[float]) -> float:
    return float(np.median(values))


def _malloc_label(rec: dict) -> str:
    return "heap reuse" if rec["heap_reuse"] else "default malloc"


def run_config(args, config: str, batch_size: int, heap_reuse: bool, tmp: Path) -> tuple[dict, np.ndarray]:
    stem = f"{config}_{batch_size}_{int(heap_reuse)}"
    result, matrix = tmp / f"{stem}.json", tmp / f"{stem}.npy"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        config,
        "--model",
        args.model,
        "--size",
        str(args.size),
        "--images",
        str(args.images),
        "--batch-size",
        str(batch_size),
        "--device",
        args.device,
        "--result",
        str(result),
        "--matrix",
        str(matrix),
    ]
    if heap_reuse:
        cmd.append("--heap-reuse")
    if args.grad_checkpointing:
        cmd.append("--grad-checkpointing")
    if args.compile:
        cmd.append("--compile")
    cmd += ["--precision", args.precision]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{config} (batch {batch_size}) failed:\n{proc.stderr[-4000:]}")
    return json.loads(result.read_text()), np.load(matrix)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="hpx_former_s18")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--images", type=int, default=3, help="timed images (plus one warm-up image)")
    parser.add_argument(
        "--batch-sizes", default=None, help="comma-separated batch sizes for ours (default: 1 on CPU, 1,8 on CUDA)"
    )
    parser.add_argument("--batch-size", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--skip-published", action="store_true", help="only time ours")
    parser.add_argument(
        "--published-batch-sizes",
        default="1",
        help="comma-separated batch sizes for the published code (default 1: one image at a time)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="run every configuration this many times, interleaved; report medians"
    )
    parser.add_argument(
        "--grad-checkpointing",
        action="store_true",
        help="ours with activation recomputation (less memory, about 1.5x the time)",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "tf32", "bf16", "fp16"],
        help="ours in TF32 or under CUDA autocast at this precision (the published code runs "
        "as PyTorch's defaults have it)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="ours with its repeated blocks compiled (torch.compile); the compiling is in the warm-up",
    )
    parser.add_argument("--worker", choices=["published", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--heap-reuse", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--matrix", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return

    import torch

    from hpx_analysis.io.devices import cpu_name

    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    batch_sizes = [int(b) for b in (args.batch_sizes or ("1,8" if cuda else "1")).split(",")]
    device_name = torch.cuda.get_device_name(0) if cuda else f"{cpu_name()}, {os.cpu_count()} cores"
    print(
        f"ERF benchmark: {args.model} at {args.size} px, {args.images} timed images (+1 warm-up), "
        f"{device_name}, torch {torch.__version__}"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "")
    published_batches = [int(b) for b in args.published_batch_sizes.split(",")]
    published = (
        []
        if args.skip_published
        else ([("published", b, False) for b in published_batches] + ([] if cuda else [("published", 1, True)]))
    )
    configs = published + [("ours", b, True) for b in batch_sizes]
    runs: dict[tuple, list[tuple[dict, np.ndarray]]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):  # configurations interleaved, so that drift hits all alike
            for config in configs:
                rec, mat = run_config(args, *config, Path(tmp))
                runs[config].append((rec, mat))
                print(
                    f"  [{rep + 1}/{args.repeats}] {rec['config']:10s} {_malloc_label(rec):14s} batch "
                    f"{rec['batch_size']:2d}: {rec['per_image_s']:8.4f} s/image (CPU time "
                    f"{rec['cpu_s_per_image']:.2f} s/image, warm-up {rec['first_image_s']:.2f} s), "
                    f"peak {rec['peak_gb']:.2f} GB ({rec['peak_kind']})",
                    flush=True,
                )
                if rec["images_per_pass"] and rec["images_per_pass"] < rec["batch_size"]:
                    print(f"      the device ran out of memory: {rec['images_per_pass']} images per pass", flush=True)
                if rec["precision_deviation"]:
                    print(
                        f"      {args.precision} deviation from float32 (warm-up batch): "
                        f"{json.dumps(rec['precision_deviation'])}",
                        flush=True,
                    )
    if args.repeats > 1:
        print("medians over the repeats:")
        for results in runs.values():
            rec = results[0][0]
            print(
                f"  {rec['config']:10s} {_malloc_label(rec):14s} batch {rec['batch_size']:2d}: "
                f"{_median([r['per_image_s'] for r, _ in results]):8.4f} s/image, "
                f"peak {max(r['peak_gb'] for r, _ in results):.2f} GB"
            )
    for ours in configs[len(published) :]:
        mat = runs[ours][0][1]
        for base_config in published:
            base = runs[base_config][0][1]
            speedups = [b["per_image_s"] / o["per_image_s"] for (b, _), (o, _) in zip(runs[base_config], runs[ours])]
            memory = max(o["peak_gb"] for o, _ in runs[ours]) / max(b["peak_gb"] for b, _ in runs[base_config])
            diff = np.abs(mat - base)
            rec, base_rec = runs[ours][0][0], runs[base_config][0][0]
            each = f" (each repeat: {', '.join(f'{x:.2f}x' for x in speedups)})" if len(speedups) > 1 else ""
            print(
                f"{rec['config']} batch {rec['batch_size']} vs published batch {base_rec['batch_size']} "
                f"({_malloc_label(base_rec)}): "
                f"{_median(speedups):.2f}x faster per image{each}, peak memory {memory:.2f}x; "
                f"ERF max |diff| / max = {diff.max() / base.max():.2e}, relative L1 = {diff.sum() / base.sum():.2e}"
            )
            if cuda:  # the published code runs as PyTorch's defaults have it: cuDNN convolutions in TF32
                print(
                    "  (on CUDA the published code's convolutions run in TF32, ours in full float32: the "
                    "difference is the published side's rounding; cuda_check.py checks ours against float64)"
                )
            elif args.precision == "fp32" and not np.allclose(mat, base, rtol=1e-3, atol=1e-4 * base.max()):
                raise SystemExit("ERF matrices of ours and the published implementation disagree")
    print(f"load average after: {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "")


if __name__ == "__main__":
    main()
