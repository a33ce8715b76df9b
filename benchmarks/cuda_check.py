"""ERF on a device (CUDA) against a float64 CPU reference, model by model.

For each model (seeded random initialisation, the same weights on both sides) the ERF
matrix of ``--images`` bundled photographs at ``--size`` px is computed once in float64
on the CPU, then on ``--device`` in float32 at batch 1, in float32 at batch ``--images``,
with gradient checkpointing, and (on CUDA) in TF32 and under bf16 autocast. Each is compared with the
reference by relative L1 (sum |diff| / sum |ref|) and max |diff| / max |ref|.

The float32 variants must agree within ``--fp32-tol`` (relative L1); the script exits
with status 1 otherwise. Reduced precision is reported, not judged: its deviation is
what ``hpx-analyze erf --precision tf32`` or ``bf16`` records.

This checks the hand-written backward functions (fixed-weight linears, depthwise
convolutions, the split, the FFT convolution) on the device as the ERF uses them: the
ERF is the input gradient of the whole network.

usage: python benchmarks/cuda_check.py [--device cuda] [--models hpx_former_s18,hb_former_s18]
                                       [--size 256] [--images 2]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

DEFAULT_MODELS = "hpx_former_s18,hb_former_s18,c_hpx_former_s18,hpx_a_former_s18"


def compare(matrix: np.ndarray, reference: np.ndarray) -> dict:
    """Relative L1 and max-normalized deviation of ``matrix`` from ``reference``."""
    diff = np.abs(matrix - reference)
    return {
        "rel_l1": float(diff.sum() / np.abs(reference).sum()),
        "max_rel": float(diff.max() / np.abs(reference).max()),
        "finite": bool(np.isfinite(matrix).all()),
    }


def variants(device_type: str, n_images: int) -> list[tuple[str, int, str, bool]]:
    """(label, batch size, precision, gradient checkpointing) of the device runs."""
    out = [
        ("fp32 batch 1", 1, "fp32", False),
        (f"fp32 batch {n_images}", n_images, "fp32", False),
        (f"fp32 batch {n_images} ckpt", n_images, "fp32", True),
    ]
    if device_type == "cuda":
        out += [
            (f"tf32 batch {n_images}", n_images, "tf32", False),
            (f"bf16 batch {n_images}", n_images, "bf16", False),
        ]
    return out


def check_model(name: str, size: int, n_images: int, device, fp32_tol: float) -> list[dict]:
    import timm
    import torch

    from hpx_analysis.erf import compute_erf
    from hpx_analysis.io.images import erf_transform, list_images, load_rgb

    transform = erf_transform(size)
    images = [transform(load_rgb(item.path)) for item in list_images(None, n_images)]
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    t0 = time.perf_counter()
    reference = compute_erf(model.double(), images, batch_size=n_images, device="cpu").matrix
    ref_s = time.perf_counter() - t0
    model.float().to(device)
    rows = []
    for label, batch_size, precision, ckpt in variants(device.type, n_images):
        model.set_grad_checkpointing(ckpt)
        t0 = time.perf_counter()
        result = compute_erf(model, images, batch_size=batch_size, precision=precision, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        row = {
            "model": name,
            "variant": label,
            "seconds": time.perf_counter() - t0,
            **compare(result.matrix, reference),
        }
        row["judged"] = precision == "fp32"
        row["ok"] = row["finite"] and (not row["judged"] or row["rel_l1"] <= fp32_tol)
        rows.append(row)
    model.set_grad_checkpointing(False)
    print(f"{name}: float64 CPU reference in {ref_s:.1f} s", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (or cpu, to try the script)")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated model names")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=int, default=2, help="bundled photographs per ERF")
    parser.add_argument("--fp32-tol", type=float, default=2e-3, help="largest relative L1 accepted for float32")
    args = parser.parse_args(argv)

    import torch

    import hpx_analysis  # noqa: F401  (registers the models with timm)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available here")
        return 2
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"ERF on {where} vs float64 CPU reference: {args.size} px, {args.images} images, torch {torch.__version__}",
        flush=True,
    )
    rows = []
    for name in args.models.split(","):
        rows += check_model(name, args.size, args.images, device, args.fp32_tol)
    print(f"{'model':22s} {'variant':22s} {'rel L1':>9s} {'max rel':>9s} {'time s':>7s}  verdict")
    for r in rows:
        verdict = ("ok" if r["ok"] else "FAIL") if r["judged"] else ("reported" if r["finite"] else "FAIL (non-finite)")
        print(
            f"{r['model']:22s} {r['variant']:22s} {r['rel_l1']:9.2e} {r['max_rel']:9.2e} {r['seconds']:7.2f}  {verdict}"
        )
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
