"""Worker for the two-process ERF test: a small float64 CNN over 7 tensors, run under
torchrun (gloo); rank 0 writes the reduced matrix and the image list.

usage: python -m torch.distributed.run --standalone --nproc_per_node 2 erf_dist_worker.py OUT_DIR
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hpx_analysis.erf import ErfSettings, erf_result
from hpx_analysis.erf.run import run_erf
from hpx_analysis.execution.distributed import dist_context
from hpx_analysis.settings import RunContext


def worker_model() -> nn.Module:
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.GELU(), nn.Conv2d(6, 4, 3, stride=2, padding=1)).double()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body

        def forward_features(self, x):
            return self.body(x)

    return Net().eval()


def worker_images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(3, 12, 12, generator=g, dtype=torch.float64) for _ in range(7)]


def main(out_dir: str) -> None:
    ctx = dist_context("cpu")
    out = Path(out_dir)
    state, info = run_erf(
        worker_model(),
        worker_images(),
        ErfSettings(batch_size=2),
        {"model": "worker"},
        out / "erf_worker.partial",
        RunContext(dist=ctx),
    )
    res = erf_result(state, info)
    if ctx.is_main:
        np.save(out / "matrix.npy", res.matrix)
        (out / "meta.json").write_text(json.dumps({"world_size": ctx.world_size, "used": res.used}))
    else:
        # every rank holds the same reduced result
        assert res.num_images == 7


if __name__ == "__main__":
    main(sys.argv[1])
