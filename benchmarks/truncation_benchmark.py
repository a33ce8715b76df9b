"""Time a truncation sweep with stage-prefix reuse against recomputing the whole network
for every setting, on one model and a few random images (checks both give the same table).

usage: python benchmarks/truncation_benchmark.py [--model hpx_former_s4] [--images 8]
       [--size 64] [--rel-sizes 0.3,1] [--batch-size 2] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="hpx_former_s4")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--rel-sizes", default="0.3,1")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
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
    t0 = time.perf_counter()
    res = truncation_sweep(model, batches, name=args.model, rel_sizes=rel_sizes, stages=stages)
    t_reuse = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive = full_recompute(model, batches, rel_sizes, stages)
    t_full = time.perf_counter() - t0

    table = res.table.set_index(["stage", "rel_size", "metric"]).value
    worst = max(abs(table[(s, r, "kl")] - naive[(s, r)][1]) for (s, r) in naive)
    same_agree = all(np.isclose(table[(s, r, "agreement")], naive[(s, r)][0]) for (s, r) in naive)
    print(f"prefix reuse:         {t_reuse:7.2f} s")
    print(f"full recomputation:   {t_full:7.2f} s   ({t_full / t_reuse:.2f}x the prefix-reuse time)")
    print(f"same agreement: {same_agree}; largest KL difference: {worst:.2e}")


if __name__ == "__main__":
    main()
