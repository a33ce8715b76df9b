"""Time a truncation sweep with stage-prefix reuse against recomputing the whole network
for every setting, on one model and a few random images (checks both give the same table).

usage: python benchmarks/truncation_benchmark.py [--model hpx_former_s4] [--images 8]
       [--size 64] [--rel-sizes 0.3,1] [--batch-size 2] [--threads N] [--before FILE]

``--before FILE`` also times the sweep of another version of ``hpx_analysis/truncation.py``
(``git show REV:hpx_analysis/truncation.py > FILE``), in the same process right before the
current one, for a paired before/after comparison on a shared machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time

import numpy as np
import pandas as pd
import timm
import torch
import torch.nn.functional as F

import hpx_analysis  # noqa: F401
from hpx_analysis.models import long_conv_mixers
from hpx_analysis.truncation import swept_stages, truncation_sweep


def full_recompute(model, batches, rel_sizes, stages):
    """The naive sweep: one whole forward pass per batch and setting; returns
    ``{(stage, rel): (agreement %, mean KL)}``."""
    by_stage = {}
    for s, _, m in long_conv_mixers(model):
        by_stage.setdefault(s, []).append(m)
    sums = {}
    n = 0
    with torch.no_grad():
        for x, _ in batches:
            ref = model(x)
            ref_logp = F.log_softmax(ref.double(), -1)
            n += x.shape[0]
            for s in stages:
                for r in rel_sizes:
                    for m in by_stage[s]:
                        m.set_truncation(r)
                    try:
                        out = model(x)
                    finally:
                        for m in by_stage[s]:
                            m.set_truncation(None)
                    kl = (ref_logp.exp() * (ref_logp - F.log_softmax(out.double(), -1))).sum(-1).sum().item()
                    agree = (out.argmax(-1) == ref.argmax(-1)).sum().item()
                    a, k = sums.get((s, r), (0, 0.0))
                    sums[(s, r)] = (a + agree, k + kl)
    return {key: (100.0 * a / n, k / n) for key, (a, k) in sums.items()}


def sweep_from_file(path: str):
    """``truncation_sweep`` of the module in ``path``, imported inside the ``hpx_analysis`` package."""
    spec = importlib.util.spec_from_file_location("hpx_analysis._truncation_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.truncation_sweep


def timed_sweep(sweep, model, batches, name, rel_sizes, stages):
    """``(seconds, result)`` of one sweep."""
    t0 = time.perf_counter()
    res = sweep(model, batches, name=name, rel_sizes=rel_sizes, stages=stages)
    return time.perf_counter() - t0, res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="hpx_former_s4")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--rel-sizes", default="0.3,1")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--before", default=None, help="another version of hpx_analysis/truncation.py to time as well")
    p.add_argument("--skip-full", action="store_true", help="with --before: time only the two sweeps")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = timm.create_model(args.model).eval()
    rel_sizes = [float(v) for v in args.rel_sizes.split(",")]
    stages = swept_stages(model, None, args.model)
    x = torch.randn(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    batches = [(x[i : i + args.batch_size], None) for i in range(0, args.images, args.batch_size)]
    settings = len(stages) * len(rel_sizes)
    print(
        f"{args.model}: {args.images} images of {args.size} px, batch {args.batch_size}, {len(stages)} stages x "
        f"{len(rel_sizes)} sizes = {settings} settings, {torch.get_num_threads()} threads"
    )

    with torch.no_grad():  # warm-up (first-call allocations)
        model(x[:1])
    # untimed: one image through every setting (probes the fast paths once, fills the kernel caches the
    # same way for whichever sweep comes next)
    truncation_sweep(model, [(x[:1], None)], rel_sizes=rel_sizes, stages=stages)
    if args.before:
        t_before, res_before = timed_sweep(sweep_from_file(args.before), model, batches, args.model, rel_sizes, stages)
    t_reuse, res = timed_sweep(truncation_sweep, model, batches, args.model, rel_sizes, stages)
    if args.before and args.skip_full:
        pd.testing.assert_frame_equal(res.table, res_before.table, rtol=1e-4, atol=1e-9)
        print(f"before: {t_before:7.2f} s; current: {t_reuse:7.2f} s = {t_reuse / t_before:.2f}x before (same table)")
        return
    t0 = time.perf_counter()
    naive = full_recompute(model, batches, rel_sizes, stages)
    t_full = time.perf_counter() - t0

    table = res.table.set_index(["stage", "rel_size", "metric"]).value
    worst = max(abs(table[(s, r, "kl")] - naive[(s, r)][1]) for (s, r) in naive)
    same_agree = all(np.isclose(table[(s, r, "agreement")], naive[(s, r)][0]) for (s, r) in naive)
    if args.before:
        print(f"before ({args.before}): {t_before:7.2f} s = {t_before / t_full:.2f}x the full recomputation")
        pd.testing.assert_frame_equal(res.table, res_before.table, rtol=1e-4, atol=1e-9)
        print("before and current give the same table (to 1e-4)")
    print(f"current sweep:        {t_reuse:7.2f} s = {t_reuse / t_full:.2f}x the full recomputation")
    print(f"full recomputation:   {t_full:7.2f} s")
    print(f"same agreement: {same_agree}; largest KL difference: {worst:.2e}")


if __name__ == "__main__":
    main()
