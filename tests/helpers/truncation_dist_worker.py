"""Worker for the sharding test: the same small truncation sweep, run either as one plain
process or as several under torchrun (``WORLD_SIZE``/``RANK`` from the environment).

usage: python truncation_dist_worker.py OUT_CSV   (or under torchrun)
"""

import sys

import timm
import torch

import hpx_analysis  # noqa: F401
from hpx_analysis.execution.distributed import dist_context
from hpx_analysis.models import long_conv_mixers
from hpx_analysis.truncation import truncation_sweep

# batches of one image on one thread: every image is computed the same way in every
# process layout, so only the order of the float64 sums can differ
NUM_IMAGES, BATCH, SIZE = 7, 1, 64


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("hpx_former_s4").eval()
    with torch.no_grad():
        # a random init's long kernels are tiny next to the skip path: scale them up (and
        # sharpen the head) so that truncation visibly moves the predictions
        for _, _, m in long_conv_mixers(model):
            m.long_conv.implicit_filter[-1].weight.mul_(300.0)
        model.head.fc2.weight.mul_(30.0)
    return model


def make_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(NUM_IMAGES, 3, SIZE, SIZE, generator=g), torch.randint(0, 1000, (NUM_IMAGES,), generator=g)


def run(shard) -> "pd.DataFrame":  # noqa: F821
    x, y = make_data()
    idx = shard.take(list(range(NUM_IMAGES)))
    batches = [(x[idx[i : i + BATCH]], y[idx[i : i + BATCH]]) for i in range(0, len(idx), BATCH)]
    return truncation_sweep(make_model(), batches, name="hpx_former_s4", rel_sizes=[0.2, 0.5], stages=[1, 2]).table


if __name__ == "__main__":
    torch.set_num_threads(1)
    shard = dist_context("cpu")
    table = run(shard)
    if shard.is_main:
        table.to_csv(sys.argv[1], index=False, float_format="%.17g")
