"""Writes the exploration notebooks of this folder (without outputs).

    .venv/bin/python notebooks/generate.py

Each notebook uses the library API (not the command line) on small HyenaPixel models
(S4: one block per stage) with a seeded random init and one or two bundled photographs,
so that it runs top to bottom on a CPU in seconds. The tests execute every notebook and
check that the committed files are what this script writes.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
%matplotlib inline
import matplotlib.pyplot as plt
import torch

from hpx_analysis.io.weights import load_model

torch.manual_seed(0)
SEED = 0"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "erf_comparison.ipynb": [
        (
            "md",
            """\
# Effective receptive fields: HyenaPixel against bidirectional Hyena

The effective receptive field (ERF, Luo et al. 2016; RepLKNet's protocol; the paper's Fig. 5)
shows how strongly each input pixel influences the centre unit of a model's last feature map:
the gradient of that unit with respect to the image, rectified, summed over colour channels and
averaged over images.

Here: two small models (S4, one block per stage) with a **seeded random init, not trained
weights**, on one bundled photograph at 128 px. With published weights
(`hpx_s18=pretrained`), 50 ImageNet validation images and 1024 px you get the paper's setting
(`hpx-analyze erf` or `hpx-analyze report`).""",
        ),
        (
            "code",
            SETUP
            + """

from hpx_analysis.erf import compute_erf
from hpx_analysis.erf.metrics import erf_metrics
from hpx_analysis.io.images import list_images
from hpx_analysis.plotting.erf import plot_erf

images = list_images(None, 1)  # the first bundled photograph
print([item.path.split("/")[-1] for item in images])""",
        ),
        (
            "md",
            """\
`compute_erf` returns an `ErfResult`: the raw float64 mean contribution matrix (H x W, one value
per input pixel) plus a record of the images used and skipped. The `settings` dict is only used
for the panel titles.""",
        ),
        (
            "code",
            """\
results = []
for spec in ("hpx_s4=random", "hb_s4=random"):
    loaded = load_model(spec, device="cpu", seed=SEED)
    result = compute_erf(loaded.model, images, size=128)
    result.settings = {"model": loaded.name, "weights": loaded.weights}
    results.append(result)
    print(loaded.name, result.matrix.shape, f"{result.num_images} image(s), {result.seconds:.1f} s")""",
        ),
        (
            "md",
            """\
The heatmaps use RepLKNet's scaling: `log10(x + 1)`, normalized per map. A large bright area means
that pixels far from the centre still move the centre unit; a small bright spot is a local ERF.""",
        ),
        (
            "code",
            """\
fig = plot_erf(results)
plt.close(fig)  # shown once, as the cell's value
fig""",
        ),
        (
            "md",
            """\
The same comparison in numbers (`erf_metrics`): `square_side_t0.2` is the side of the smallest
centred square holding 20% of the scaled ERF (RepLKNet's measure), `r50_px`/`r90_px` the radii
holding 50%/90% of the raw mass, `anisotropy` +1 for a horizontal line and -1 for a vertical one.""",
        ),
        (
            "code",
            """\
import pandas as pd

table = pd.DataFrame([{"model": r.settings["model"], **erf_metrics(r.matrix)} for r in results])
table[["model", "square_side_t0.2", "square_side_t0.5", "r50_px", "r90_px", "anisotropy", "dead_fraction"]]""",
        ),
    ],
    "erf_stages.ipynb": [
        (
            "md",
            """\
# ERFs per stage: how context grows with depth

The ERF of the centre unit of each stage's feature map (timm's `forward_intermediates`),
not only of the last one; stages are numbered from 0, as `--stage` takes them. The paper
compares how far trained H_px and H_b see at each stage.

Models: S4 (one block per stage) with a **seeded random init, not trained weights**, so the
maps show the initialisation, not what training learns; one
bundled photograph at 128 px. The command line does the same with
`hpx-analyze erf -m hpx_s18 -m hb_s18 --stage 0,1,2,3`.""",
        ),
        (
            "code",
            SETUP
            + """

import pandas as pd

from hpx_analysis.erf import compute_erf
from hpx_analysis.erf.geometry import unit_position
from hpx_analysis.erf.unit import ErfUnit
from hpx_analysis.io.images import list_images
from hpx_analysis.plotting.erf import plot_erf_grid

images = list_images(None, 1)""",
        ),
        (
            "md",
            """\
`ErfUnit(stage=k)` names the map; the unit is its centre `(H // 2, W // 2)`. `unit_position`
says where that unit sits in the input (here 1 px right of and below the image centre: the
stem's 7 x 7 window with padding 2 is centred on pixel `4 i + 1`).""",
        ),
        (
            "code",
            """\
results = []
for spec in ("hpx_s4=random", "hb_s4=random"):
    loaded = load_model(spec, device="cpu", seed=SEED)
    for stage in range(4):
        unit = ErfUnit(stage=stage)
        result = compute_erf(loaded.model, images, size=128, unit=unit)
        result.model, result.weights, result.unit = loaded.name, loaded.weights, unit.describe()
        result.position = unit_position(loaded.model, 128, unit)
        results.append(result)
print([(r.model, r.unit["stage"], r.position["centre_px"]) for r in results[:4]])""",
        ),
        (
            "md",
            """\
A row per model (with its weights tag), a column per stage, each map scaled on its own
(RepLKNet's `log10(x + 1)`).""",
        ),
        (
            "code",
            """\
fig = plot_erf_grid(results, column="stage")
plt.close(fig)
fig""",
        ),
        (
            "md",
            """\
In numbers, around the unit's own position: `r50_px`/`r90_px` are the radii holding 50%/90% of
the mass, `gauss_sigma_x_px` the width of a fitted 2D Gaussian, `erf90_area_px` the fewest
pixels holding 90% of the mass.""",
        ),
        (
            "code",
            """\
rows = []
for r in results:
    r.full_metrics = True
    m = r.metrics()
    rows.append({"model": r.model, "stage": r.unit["stage"], **m})
table = pd.DataFrame(rows)
table[["model", "stage", "r50_px", "r90_px", "gauss_sigma_x_px", "erf90_area_px", "dead_fraction"]]""",
        ),
        (
            "md",
            """\
What the table says, written from its numbers (the image is 128 px wide, 64 px each side of
its centre):""",
        ),
        (
            "code",
            """\
for model, part in table.groupby("model", sort=False):
    r90 = part.set_index("stage")["r90_px"]
    steps = ", ".join(f"stage {s}: {v:g} px" for s, v in r90.items())
    trend = "grows with every stage" if r90.is_monotonic_increasing else "does not grow with every stage"
    print(f"{model} (random init): r90 {steps}; it {trend}, and its largest r90 (stage {r90.idxmax()}) "
          f"is {r90.max() / 64:.2f} times the 64 px half-width of the image.")""",
        ),
    ],
    "kernel_gallery.ipynb": [
        (
            "md",
            """\
# Kernel gallery: the long convolutions of H_px and H_b

HyenaPixel (H_px) applies a 2D kernel almost twice the size of the feature map; bidirectional
Hyena (H_b) a 1D kernel on the raster-flattened feature map. `kernel_maps` returns, per stage,
the effective kernel (after the learned decay window) averaged over channels and the channel
with the most energy, both normalized to max |w| = 1 (the paper's Fig. 4).

Models: S4 (one block per stage) with a **seeded random init**, so what you see is the
initialisation (implicit filter network and decay window), not learned structure. Use
`hpx_s18=pretrained` / `hb_s18=pretrained` for the paper's kernels.""",
        ),
        (
            "code",
            SETUP
            + """

from hpx_analysis.kernels import kernel_maps
from hpx_analysis.plotting import plot_kernels

hpx = load_model("hpx_s4=random", device="cpu", seed=SEED)
hpx_kernels = kernel_maps(hpx.model, name=hpx.name, weights=hpx.weights)
for sk in hpx_kernels.stages:
    print(f"stage {sk.stage}: {sk.mixer}, kernel {sk.mean.shape} for a {sk.feature_size} feature map, "
          f"top-energy channel {sk.channel}")""",
        ),
        (
            "md",
            """\
H_px kernels are shown as the kernel arrays themselves: the tap right of and below the centre
weights the input pixel left of and above the output pixel (a true, flipped convolution), so the
maps are point-mirrored with respect to the pixels they weight.""",
        ),
        (
            "code",
            """\
fig = plot_kernels(hpx_kernels, weights=hpx.weights)  # the title says "random init"
plt.close(fig)  # shown once, as the cell's value
fig""",
        ),
        (
            "md",
            """\
For H_b the 1D kernel is wrapped onto the feature map for one output pixel (the star; here the
top-right corner via `at=(0, -1)`): each map pixel holds the weight that input pixel gets. At
another output position the same kernel wraps differently, which is why H_b has no fixed 2D
neighbourhood.""",
        ),
        (
            "code",
            """\
hb = load_model("hb_s4=random", device="cpu", seed=SEED)
hb_kernels = kernel_maps(hb.model, name=hb.name, weights=hb.weights, at=(0, -1))
fig = plot_kernels(hb_kernels, weights=hb.weights)
plt.close(fig)  # shown once, as the cell's value
fig""",
        ),
        (
            "md",
            """\
The arrays behind the figures are plain numpy arrays. `save` writes them to `kernels_<model>.npz`
(the file `hpx-analyze kernels` writes) and `KernelResult.load` reads them back; `to_frame` lists
what each stage shows:""",
        ),
        (
            "code",
            """\
import tempfile
from hpx_analysis.kernels import KernelResult
with tempfile.TemporaryDirectory() as folder:
    print(hb_kernels.save(folder).name)
    again = KernelResult.load(folder, hb.name)
print(again.stages[0].mean.shape, (again.stages[0].mean == hb_kernels.stages[0].mean).all())
again.to_frame()""",
        ),
    ],
    "coverage.ipynb": [
        (
            "md",
            """\
# Relative feature-map coverage of the learned decay windows

Each H_px kernel is multiplied by a learned exponential decay window. Setting every window value
below 0.05 to zero and measuring the diameter of what is left, relative to the feature-map size,
tells how much of the feature map a block can reach (the paper's Fig. 6). Attention counts as 2
and ordinary convolutions as kernel size / feature-map size, so mixed models share one axis.

Models: S4 with a **seeded random init**: the windows are at their initial decay rates, so
the curves show the initialisation. With published S18 weights (`hpx_s18`, `c_hpx_s18`,
`hpx_a_s18`) you get the paper's figure.""",
        ),
        (
            "code",
            SETUP
            + """

import pandas as pd

from hpx_analysis.coverage import model_coverage
from hpx_analysis.plotting import plot_coverage

tables = []
for spec in ("hpx_s4=random", "hb_s4=random"):
    loaded = load_model(spec, device="cpu", seed=SEED)
    result = model_coverage(loaded.model, name=loaded.name, weights=loaded.weights)
    tables.append(result.blocks)
    for note in result.notes:
        print(note)
blocks = pd.concat(tables, ignore_index=True)
blocks[["model", "stage", "block", "mixer", "coverage", "diameter", "feature_size", "source"]]""",
        ),
        (
            "md",
            """\
H_b windows live on the 1D token axis (coverage = extent in tokens / number of tokens), an extra
the paper does not plot. The plot puts block depth on the x axis, stage boundaries dashed
(`s0` ... `s3`, the `stage` column above), and tags each model with its weights.""",
        ),
        (
            "code",
            """\
fig = plot_coverage(blocks)
plt.close(fig)  # shown once, as the cell's value
fig""",
        ),
        (
            "md",
            """\
The threshold matters: a lower threshold keeps more of the slowly decaying tail. The `area`
reading uses the diameter of the disk with the same area as the non-zero region instead of the
extent along the axes.""",
        ),
        (
            "code",
            """\
hpx = load_model("hpx_s4=random", device="cpu", seed=SEED)
rows = []
for threshold in (0.01, 0.05, 0.2):
    for reading in ("axis", "area"):
        b = model_coverage(hpx.model, name=hpx.name, threshold=threshold, reading=reading).blocks
        rows.append({"threshold": threshold, "reading": reading,
                     **{f"stage {s}": round(v, 3) for s, v in b.groupby("stage")["coverage"].mean().items()}})
pd.DataFrame(rows)""",
        ),
    ],
    "global_context_probe.ipynb": [
        (
            "md",
            """\
# Global context probe: what the analyses show on trained models

Published weights cannot be downloaded everywhere, so this toolbench ships small models it
trained itself on a synthetic task (`hpx_analysis.probe`): a coloured 5x5 square in grey noise at
Chebyshev distance `d` (2-28 px) from the readout centre of a 64 px image; the label is its colour
(4 classes, chance 25 %). Each probe model (one 16x16 stage of one block, about 60k parameters) is
read out at the **centre unit** of its last feature map, the unit an ERF is taken at, so
accuracy against `d` measures how far its context reaches. `conv_probe` (SepConv 7x7) sees
31x31 px around the readout; `hpx_probe` (H_px), `hb_probe` (H_b) and `attn_probe` see the image.
The weights used here are the **bundled trained checkpoints** (`auto` picks them).""",
        ),
        (
            "code",
            SETUP
            + """

from hpx_analysis.probe import ProbeTask, fixed_test_split, accuracy_by_distance, bundled_record

task = ProbeTask()
batch = task.batch("val", 0, 8)
fig, axes = plt.subplots(1, 8, figsize=(12, 1.8))
for ax, img, label, d in zip(axes, batch.images, batch.labels, batch.distances):
    ax.imshow((img * 0.25 + 0.5).clamp(0, 1).permute(1, 2, 0))
    ax.plot(task.centre, task.centre, "w+")
    ax.set_title(f"class {int(label)}, d={int(d)}", fontsize=8)
    ax.axis("off")
plt.close(fig)
fig""",
        ),
        ("md", "Accuracy against distance on the fixed test split (432 images), for each bundled probe:"),
        (
            "code",
            """\
import pandas as pd
from hpx_analysis.plotting.probe import plot_probe_accuracy

test = fixed_test_split(task)
models = {name: load_model(name, seed=SEED) for name in ("hpx_probe", "hb_probe", "conv_probe", "attn_probe")}
table = pd.concat(
    [accuracy_by_distance(m.model, test, name=name, weights=m.weights) for name, m in models.items()], ignore_index=True
)
print({name: m.weights for name, m in models.items()})
print({name: bundled_record(name)["bin_accuracy"] for name in models})
fig = plot_probe_accuracy(table, rf_px={"conv_probe": 17})
plt.close(fig)
fig""",
        ),
        (
            "md",
            """\
The dashed line marks `conv_probe`'s reach (17 px: its 31x31 px receptive field plus half the
square). The mean accuracy inside and beyond it, per model, from the table above:""",
        ),
        (
            "code",
            """\
reach = 17
near_far = table.assign(beyond=table.distance_px > reach).groupby(["model", "beyond"], sort=False).accuracy.mean()
for name in models:
    near, far = 100 * near_far[name, False], 100 * near_far[name, True]
    print(f"{name}: {near:.0f} % within {reach} px, {far:.0f} % beyond (chance 25 %)")""",
        ),
        (
            "md",
            """\
The ERFs of the same centre unit, over probe test images, titled with each model's weights; the
sentence under them compares their 90 % radii:""",
        ),
        (
            "code",
            """\
from hpx_analysis.erf import compute_erf
from hpx_analysis.erf.metrics import erf_metrics
from hpx_analysis.plotting.erf import plot_erf

images = list(test.images[::54])  # 8 test images across the distances
erfs = []
for name in ("conv_probe", "hpx_probe"):
    erf = compute_erf(models[name].model, images, size=64)
    erf.model, erf.weights = name, models[name].weights
    erf.settings = {"model": name, "weights": models[name].weights}  # the panel titles
    erfs.append(erf)
r90 = {e.model: erf_metrics(e.matrix)["r90_px"] for e in erfs}
wider = max(r90, key=r90.get)
print(f"r90: {', '.join(f'{k} {v:g} px' for k, v in r90.items())}; the wider ERF is {wider}'s "
      f"({r90[wider] / min(r90.values()):.1f}x the other's radius).")
fig = plot_erf(erfs)
plt.close(fig)
fig""",
        ),
        (
            "md",
            """\
ERF over training: the bundled snapshots (`hpx_probe=bundled:STEP`) against the accuracy they had
in the far-distance bin.""",
        ),
        (
            "code",
            """\
from hpx_analysis.probe import bin_accuracy, distance_bins, snapshot_paths

rows = []
for step in snapshot_paths("hpx_probe"):
    snap = load_model(f"hpx_probe=bundled:{step}", seed=SEED)
    erf = compute_erf(snap.model, images, size=64)
    far = bin_accuracy(accuracy_by_distance(snap.model, test), distance_bins(task))
    rows.append({"step": step, **erf_metrics(erf.matrix), "far_accuracy": list(far.values())[-1]})
pd.DataFrame(rows)[["step", "r50_px", "r90_px", "far_accuracy"]]""",
        ),
        ("md", "The learned H_px kernel and its decay window (coverage of the feature map):"),
        (
            "code",
            """\
from hpx_analysis.coverage import model_coverage
from hpx_analysis.kernels import kernel_maps
from hpx_analysis.plotting.kernels import plot_kernels

print(model_coverage(models["hpx_probe"].model, name="hpx_probe").to_frame()[["model", "stage", "mixer", "coverage"]])
fig = plot_kernels(kernel_maps(models["hpx_probe"].model, name="hpx_probe"), weights=models["hpx_probe"].weights)
plt.close(fig)
fig""",
        ),
        (
            "md",
            """\
Truncation with probe labels (the Fig. 7 analogue): zeroing the H_px taps outside a window of
relative size `r` removes the far squares once the kernel no longer spans `d`; the predicted
reach counts the kept taps times the stride 4 plus the short convolutions and half the square.""",
        ),
        (
            "code",
            """\
from hpx_analysis.probe.analysis import probe_truncation

result, by_d = probe_truncation(models["hpx_probe"], rel_sizes=(0.25, 0.5, 1.0), num_images=108)
print(result.to_frame().query("metric == 'top1'")[["stage", "rel_size", "value"]])
by_d["bin"] = pd.cut(by_d.distance_px, [1, 8, 15, 22, 28])
by_d.groupby(["rel_size", "predicted_reach_px", "bin"], dropna=False, observed=True).accuracy.mean().unstack()""",
        ),
    ],
    "truncation_sweep.ipynb": [
        (
            "md",
            """\
# Truncation sweep: how much of each stage's kernel does the model use?

For one stage at a time, every long-kernel tap outside a centred window of relative size r
(window side / feature-map size) is set to zero and the model is run again (the paper's Fig. 7).
Without ImageNet labels the sweep reports how often the top-1 class stays the same as the
untruncated model's (agreement) and the mean KL divergence from it.

Here: `hpx_s4` with a **seeded random init** on two bundled photographs, three relative sizes.
With published weights and the IN-1k validation folder (`--images`), top-1 accuracy is reported
as in the paper.""",
        ),
        (
            "code",
            SETUP
            + """

from hpx_analysis.io.batches import ImageBatches
from hpx_analysis.io.images import labels_available, list_images, model_eval_transform
from hpx_analysis.plotting import plot_truncation
from hpx_analysis.truncation import full_rel_sizes, truncation_sweep

loaded = load_model("hpx_s4=random", device="cpu", seed=SEED)
items = list_images(None, 2)
print("labels:", labels_available(items))
batches = ImageBatches(items, model_eval_transform(loaded.model), batch_size=2)
print("relative size that keeps the whole kernel, per stage:", full_rel_sizes(loaded.model))""",
        ),
        (
            "md",
            """\
The features entering each stage are computed once per batch and reused for every setting of
that stage, so the sweep costs about one partial forward pass per (stage, size). The result is a
long table: one row per (stage, relative size, metric); `stage == -1` is the untruncated model.""",
        ),
        (
            "code",
            """\
result = truncation_sweep(loaded.model, batches, name=loaded.name, rel_sizes=(0.25, 0.5, 2.0))
print(result.n_images, "images;", *result.notes)
result.table.pivot_table(index=["metric", "stage"], columns="rel_size", values="value")""",
        ),
        (
            "md",
            """\
The KL divergence per stage and size, read off the table: which window sizes leave the output
unchanged, and which stage's truncation changes it most at the smallest window.""",
        ),
        (
            "code",
            """\
kl = result.table.query("metric == 'kl' and stage >= 0").pivot_table(index="stage", columns="rel_size", values="value")
smallest = kl.columns.min()
print("sizes with zero KL in every stage:", [r for r in kl.columns if (kl[r] < 1e-9).all()])
print(f"largest KL at r = {smallest:g}: stage {kl[smallest].idxmax()} ({kl[smallest].max():.3g} nats)")""",
        ),
        (
            "md",
            """\
The figure (the x label tags the model's weights: a random init here):""",
        ),
        (
            "code",
            """\
fig = plot_truncation(result.table.assign(weights=loaded.weights), metric="kl")
plt.close(fig)  # shown once, as the cell's value
fig""",
        ),
    ],
    "interactions.ipynb": [
        (
            "md",
            """\
# What each layer reads: interaction maps and mean interaction distance

For one block, the tokens `X` entering its token mixer give `Y = mixer(X)`. The published mixers
are linear in their mixed signal once their input-dependent gates are fixed, so
`Y(i) = sum_j c(i, j) + e(i)`, where `c(i, j)` is the vector carried from token `j` to token `i`
(for H_px: `v(i) * K(i - j) * u(j)` through the output norm with fixed statistics and the
output projection) and `e(i)` the biases. The interaction map is `r(i, j) = ||c(i, j)||`, and
the mean interaction distance of a block is `sum r(i, j) ||p(i) - p(j)|| / sum r(i, j)` with
`p` the token centres in input pixels.

First: S4 models (one block per stage) with a **seeded random init, not trained weights**, on
one bundled photograph at 128 px. Then the bundled probe models, which *are* trained (on the
synthetic global-context task).""",
        ),
        (
            "code",
            SETUP
            + """

from hpx_analysis.interactions import interaction_maps
from hpx_analysis.io.images import list_images
from hpx_analysis.plotting.interactions import plot_interaction_distance, plot_interaction_maps

images = list_images(None, 1)""",
        ),
        (
            "md",
            """\
`interaction_maps` returns an `InteractionResult`; `to_frame()` has one row per block.
`queries_sampled` query tokens per block (a seeded sample; 0 = all) enter the distance; the
map queries (`centre`, `edge`, `corner` or `"ROW:COL"` in pixels) are kept as maps.""",
        ),
        (
            "code",
            """\
results = []
for spec in ("hpx_s4=random", "hb_s4=random"):
    loaded = load_model(spec, device="cpu", seed=SEED)
    results.append(interaction_maps(loaded.model, images, size=128, queries_sampled=64, name=loaded.name))
results[0].to_frame()[["model", "stage", "block", "mixer", "mean_distance_px", "queries"]]""",
        ),
        (
            "md",
            """\
The maps of three query points (rows: blocks; each map scaled to its own maximum; the cross
marks the query). H_b's maps live on the raster-flattened order, so what it reads wraps around
row ends.""",
        ),
        (
            "code",
            """\
fig = plot_interaction_maps(results)
plt.close(fig)
fig""",
        ),
        (
            "md",
            """\
The trained probes on their own test images: the SepConv probe can only read 3 tokens (12 px)
each way, the H_px probe the whole 16 x 16 grid. `rollout=True` also combines the block maps
into an input-pixel map per query (`0.5 A + 0.5 I`, a heuristic).""",
        ),
        (
            "code",
            """\
from hpx_analysis.probe.analysis import probe_image_tensors

probe_images = probe_image_tensors(8)
probes = []
for spec in ("hpx_probe", "conv_probe"):
    loaded = load_model(spec, device="cpu", seed=SEED)
    probes.append(interaction_maps(loaded.model, probe_images, size=64, queries_sampled=0, rollout=True, name=spec))
fig, ax = plt.subplots(figsize=(5, 3))
plot_interaction_distance(probes, ax)
plt.close(fig)
fig""",
        ),
        (
            "code",
            """\
fig, axes = plt.subplots(1, 2, figsize=(6, 3))
for ax, res in zip(axes, probes):
    ax.imshow(res.rollout["centre"], cmap="magma")
    ax.set_title(f"{res.label}: rollout of the centre", fontsize=9)
    ax.set_axis_off()
plt.close(fig)
fig""",
        ),
    ],
    "two_stage_probes.ipynb": [
        (
            "md",
            """\
# Two-stage probes: which stage carries the far square

Four small two-stage probes trained on the 128 px global-context task (a coloured square up to
60 px from the readout centre; its colour is the label, chance 25 %), with **trained weights
bundled with the package**: `hpx_probe_s2` (H_px in both stages), `conv_probe_s2` (SepConv in
both; it cannot see beyond about 45 px), `c_hpx_probe_s2` (SepConv, then H_px) and
`hpx_c_probe_s2` (H_px, then SepConv). The hybrids have known answers: only their H_px stage can
carry the far square. The accuracies are the bundled records (full test split, 96 images per
distance, 95 % Wilson intervals); the report's `probe_s2` section recomputes a block of them.""",
        ),
        (
            "code",
            SETUP
            + """

import pandas as pd
from IPython.display import Markdown

from hpx_analysis.probe.intervals import measured_reach, reach_level
from hpx_analysis.report.probe_s2_section import S2_PROBES, carrying_stage, recorded_tables

loaded = {name: load_model(name, device="cpu", seed=SEED) for name in S2_PROBES}
tables = [recorded_tables(name, m.weights) for name, m in loaded.items()]
accuracy = pd.concat([t for t, _ in tables], ignore_index=True)
far = pd.concat([f for _, f in tables], ignore_index=True)
reach = {name: measured_reach(accuracy[accuracy.model == name], reach_level(4)) for name in S2_PROBES}
pd.DataFrame(reach).T""",
        ),
        (
            "md",
            """\
Accuracy against distance with its Wilson band; the dashed lines are the measured reach (the
largest distance up to which accuracy stays above halfway between chance and 100 %).""",
        ),
        (
            "code",
            """\
from hpx_analysis.plotting.probe_stages import plot_accuracy_with_reach

fig, ax = plt.subplots(figsize=(6.4, 3.8))
plot_accuracy_with_reach(accuracy, reach, ax)
plt.close(fig)
fig""",
        ),
        (
            "code",
            """\
conv = reach["conv_probe_s2"]["reach_px"]
Markdown(
    f"`conv_probe_s2` stays above the level up to {conv:.0f} px; the three probes with an H_px stage "
    + ", ".join(f"`{m}` {reach[m]['reach_px']:.0f} px" for m in S2_PROBES if m != "conv_probe_s2")
    + " (60 px is the largest distance tested)."
)""",
        ),
        (
            "md",
            """\
The per-stage truncation: each stage's long kernels cut to a centred window of the relative
size, the accuracy in the far quarter of distances (a panel per model, a line per stage, the
untruncated level dashed, chance dotted, the known answers starred).""",
        ),
        (
            "code",
            """\
from hpx_analysis.plotting.probe_stages import plot_stage_truncation

fig = plot_stage_truncation(far, {name: m.weights for name, m in loaded.items()})
plt.close(fig)
fig""",
        ),
        (
            "code",
            """\
Markdown(" ".join(carrying_stage(far, name) for name in ("hpx_probe_s2", "c_hpx_probe_s2", "hpx_c_probe_s2")))""",
        ),
        (
            "md",
            """\
Per-stage ERFs on 128 px probe test images (`ProbeImages` renders each model's own split): the
centre unit of each stage's feature map, each map scaled on its own.""",
        ),
        (
            "code",
            """\
from hpx_analysis.erf.job import erf_job
from hpx_analysis.erf.settings import ErfSettings, map_grid
from hpx_analysis.erf.unit import ErfUnit
from hpx_analysis.plotting.erf import plot_erf_grid
from hpx_analysis.probe.analysis import ProbeImages

maps = map_grid(ErfSettings(images="probe test split"), [None], [ErfUnit(stage=0), ErfUnit(stage=1)])
erfs = erf_job(list(loaded.values()), ProbeImages(2), maps).results
fig = plot_erf_grid(erfs, column="stage")
plt.close(fig)
fig""",
        ),
        (
            "code",
            """\
r90 = {(r.model_name, r.unit["stage"]): r.metrics()["r90_px"] for r in erfs}
Markdown(
    "Radius holding 90 % of the ERF mass (px), stage 0 / stage 1: "
    + "; ".join(f"`{m}` {r90[(m, 0)]:.0f} / {r90[(m, 1)]:.0f}" for m in S2_PROBES)
    + "."
)""",
        ),
    ],
}


# The interaction cells of the probe notebook: a separate, self-contained block at its end.
PROBE_INTERACTION_CELLS: list[tuple[str, str]] = [
    (
        "md",
        """\
## What the block reads: interaction distance and the readout unit's map

The interaction analysis (`hpx_analysis.interactions`) splits each block's token-mixer output
into what it carries from every token `j` to every token `i`, `c(i, j)` (gates fixed by the
input); `r(i, j) = ||c(i, j)||` is the interaction map and the mean interaction distance is
`sum r(i, j) ||p(i) - p(j)|| / sum r(i, j)` in input pixels. Below: the distance of each probe's
block at a seeded random init (step 0), at the bundled snapshots and trained (the last step), and
the trained readout unit's map (its block's map for the centre token): the share of its mass on
the square's pixels against the share a uniform map gets, per distance bin.""",
    ),
    (
        "code",
        """\
from hpx_analysis.plotting.probe_interactions import plot_probe_interactions
from hpx_analysis.report.probe_interactions import probe_interactions
from hpx_analysis.settings import RunContext

trained = [load_model(name, seed=SEED) for name in ("hpx_probe", "hb_probe", "conv_probe", "attn_probe")]
inter = probe_interactions(trained, num_images=2, readout_images=16, run=RunContext(seed=SEED))
print(inter.distances.pivot_table(index="model", columns="step", values="mean_distance_px", sort=False).round(1))
print(inter.shares.pivot_table(index="model", columns="bin", values="ratio", sort=False).round(1))
fig = plot_probe_interactions(inter.distances, inter.shares)
plt.close(fig)
fig""",
    ),
    ("md", "What these numbers say, computed from them:"),
    (
        "code",
        """\
last = inter.distances.groupby("model", sort=False).tail(1).set_index("model").mean_distance_px
first = inter.distances.groupby("model", sort=False).head(1).set_index("model").mean_distance_px
for name in last.index:
    change = "grew" if last[name] > first[name] else "did not grow"
    print(f"{name}: {first[name]:.1f} px at random init, {last[name]:.1f} px trained ({change})")
hpx, conv = last["hpx_probe"], last["conv_probe"]
verdict = "further" if hpx > conv else "no further"
print(f"trained H_px probe reads {verdict} than the conv probe ({hpx:.1f} vs {conv:.1f} px)")
far = inter.shares[inter.shares.bin == inter.shares.bin.iloc[-1]].set_index("model")
for name, row in far.iterrows():
    where = "above" if row.ratio > 1 else ("exactly zero" if row.share == 0 else "at or below")
    share = f"{100 * row.share:.2f} % ({row.ratio:.1f}x chance, {where})"
    print(f"{name}: far bin {row.bin} px, mass share on the square {share}")""",
    ),
]
NOTEBOOKS["global_context_probe.ipynb"] += PROBE_INTERACTION_CELLS


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, text) in enumerate(cells):
        cell = new_markdown_cell(text) if kind == "md" else new_code_cell(text)
        cell["id"] = f"cell-{i}"
        nb.cells.append(cell)
    return nb


def render(name: str) -> str:
    return nbformat.writes(build(NOTEBOOKS[name])) + "\n"


def main() -> None:
    for name in NOTEBOOKS:
        (HERE / name).write_text(render(name))
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
