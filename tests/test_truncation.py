"""Truncation sweeps (Fig. 7): exact masks, no-op at full size, prefix reuse, restore,
labels, and the two-process gloo run."""

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

import hpx_analysis  # noqa: F401
from hpx_analysis.execution.distributed import DistContext
from hpx_analysis.io.batches import ImageBatches
from hpx_analysis.io.images import labels_available, list_images
from hpx_analysis.kernels import NoLongKernelsError
from hpx_analysis.models import long_conv_mixers
from hpx_analysis.truncation import BASELINE_STAGE, full_rel_sizes, stage_prefixes, truncation_sweep

HERE = Path(__file__).parent


def _load_worker():
    spec = importlib.util.spec_from_file_location(
        "truncation_dist_worker", HERE / "helpers" / "truncation_dist_worker.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


WORKER = _load_worker()


@pytest.fixture(scope="module")
def model():
    return WORKER.make_model()


@pytest.fixture(scope="module")
def data():
    return WORKER.make_data()


def _value(table, stage, rel, metric):
    t = table[(table.stage == stage) & (table.metric == metric)]
    t = t[t.rel_size.isna()] if rel is None else t[np.isclose(t.rel_size, rel)]
    assert len(t) == 1
    return float(t.value.iloc[0])


def test_truncated_kernel_zero_outside_unchanged_inside(model):
    mixer = [m for s, _, m in long_conv_mixers(model) if s == 3][0]  # 13x13 kernel, 7x7 map
    full = mixer.effective_kernel()
    d = torch.arange(13) - 6
    # square, rel 0.45: keep |d| <= (0.45 * 7 - 1) / 2 = 1.075 per axis -> the centre 3x3
    square = (d.abs()[:, None] <= 1) & (d.abs()[None, :] <= 1)
    # disk, rel 0.75: keep da^2 + db^2 <= 2.125^2 = 4.52 -> 13 taps
    disk = (d[:, None] ** 2 + d[None, :] ** 2) <= 4
    assert int(disk.sum()) == 13
    try:
        for rel, shape, keep in [(0.45, "square", square), (0.75, "disk", disk)]:
            mixer.set_truncation(rel, shape)
            k = mixer.effective_kernel()
            assert torch.equal(k[:, ~keep], torch.zeros_like(k[:, ~keep]))
            assert torch.equal(k[:, keep], full[:, keep])
    finally:
        mixer.set_truncation(None)
    assert torch.equal(mixer.effective_kernel(), full)


def test_truncated_1d_kernel_on_token_axis():
    torch.manual_seed(0)
    hb = timm.create_model("hb_former_s4").eval()
    mixer = [m for s, _, m in long_conv_mixers(hb) if s == 3][0]  # L = 49, Lf = 97
    full = mixer.effective_kernel()
    d = torch.arange(97) - 48
    keep = d.abs() <= 6  # rel 0.3: (0.3 * 49 - 1) / 2 = 6.85
    mixer.set_truncation(0.3)
    try:
        k = mixer.effective_kernel()
    finally:
        mixer.set_truncation(None)
    assert torch.equal(k[:, ~keep], torch.zeros_like(k[:, ~keep]))
    assert torch.equal(k[:, keep], full[:, keep])


def test_stage_prefixes_equal_forward_to_stage(model, data):
    x = data[0][:2]
    with torch.no_grad():
        pre = stage_prefixes(model, x, [0, 2, 3])
        for s in (0, 2, 3):
            assert torch.equal(pre[s], model.forward_to_stage(x, s))


def test_full_size_changes_no_prediction(model, data):
    x = data[0][:3]
    full = full_rel_sizes(model)
    assert full[0] == pytest.approx(111 / 56) and full[3] == pytest.approx(13 / 7)
    res = truncation_sweep(model, [(x, None)], name="m", rel_sizes=[max(full.values())], stages=[0, 3])
    t = res.table
    assert set(t.metric) == {"agreement", "kl"} and res.n_labelled == 0 and "no labels" in res.notes[0]
    for s in (0, 3):
        assert _value(t, s, max(full.values()), "agreement") == 100.0
        assert _value(t, s, max(full.values()), "kl") == 0.0


def test_prefix_reuse_equals_full_recomputation(model, data):
    x, y = data
    with torch.no_grad():
        y = y.clone()
        y[:4] = model(x[:4]).argmax(-1)  # some hits, so that top-1 is not trivially 0
    batches = [(x[:3], y[:3]), (x[3:], y[3:])]
    rels, stages = [0.2, 0.5], [1, 2]
    res = truncation_sweep(model, batches, name="m", rel_sizes=rels, stages=stages)
    # chunks of one batch (kernels rebuilt per batch) give the same table
    per_batch = truncation_sweep(model, batches, name="m", rel_sizes=rels, stages=stages, chunk_images=1)
    pd.testing.assert_frame_equal(res.table, per_batch.table)
    by_stage = {}
    for s, _, m in long_conv_mixers(model):
        by_stage.setdefault(s, []).append(m)
    with torch.no_grad():
        ref = model(x)
        ref_logp = F.log_softmax(ref.double(), -1)
        assert _value(res.table, BASELINE_STAGE, None, "top1") == pytest.approx(
            100 * (ref.argmax(-1) == y).double().mean().item()
        )
        assert _value(res.table, BASELINE_STAGE, None, "top1") >= 400 / 7
        nontrivial = False
        for s in stages:
            for r in rels:
                for m in by_stage[s]:
                    m.set_truncation(r)
                try:
                    out = model(x)
                finally:
                    for m in by_stage[s]:
                        m.set_truncation(None)
                kl = (ref_logp.exp() * (ref_logp - F.log_softmax(out.double(), -1))).sum(-1).mean().item()
                agree = 100 * (out.argmax(-1) == ref.argmax(-1)).double().mean().item()
                top5 = 100 * (out.topk(5, -1).indices == y[:, None]).any(-1).double().mean().item()
                # float32 logits from batches of 3 and 4 against one batch of 7: rounding only
                assert _value(res.table, s, r, "kl") == pytest.approx(kl, rel=1e-4, abs=1e-9)
                assert _value(res.table, s, r, "agreement") == pytest.approx(agree)
                top1 = 100 * (out.argmax(-1) == y).double().mean().item()
                assert _value(res.table, s, r, "top1") == pytest.approx(top1)
                assert _value(res.table, s, r, "top5") == pytest.approx(top5)
                nontrivial |= kl > 1e-3
    assert nontrivial, "the test model should be sensitive to truncation"


def test_restores_state_even_on_error(model, data):
    mixer = [m for s, _, m in long_conv_mixers(model) if s == 2][0]
    mixer.set_truncation(0.7, "disk")
    model.train()

    def failing_batches():
        yield data[0][:1], None
        raise RuntimeError("disk on fire")

    try:
        with pytest.raises(RuntimeError, match="disk on fire"):
            truncation_sweep(model, failing_batches(), rel_sizes=[0.3], stages=[2, 3])
        assert model.training
        assert mixer.truncation.rel_size == 0.7 and mixer.truncation.shape == "disk"
        assert all(m.truncation is None for s, _, m in long_conv_mixers(model) if m is not mixer)
        truncation_sweep(model, [(data[0][:1], None)], rel_sizes=[0.3], stages=[3])
        assert model.training and mixer.truncation.rel_size == 0.7
    finally:
        mixer.set_truncation(None)
        model.eval()


def test_bad_requests_are_clear(model):
    with pytest.raises(NoLongKernelsError, match="not a HyenaPixel-family model"):
        truncation_sweep(torch.nn.Linear(3, 3), [], name="lin")
    with pytest.raises(ValueError, match="stage 4"):
        truncation_sweep(model, [], stages=[4])
    with pytest.raises(ValueError, match="positive"):
        truncation_sweep(model, [], rel_sizes=[0.0])
    with pytest.raises(ValueError, match="no images"):
        truncation_sweep(model, [], rel_sizes=[0.5], stages=[3])


@pytest.mark.slow
def test_two_gloo_processes_equal_one(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out2 = tmp_path / "two.csv"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(HERE / "helpers" / "truncation_dist_worker.py"),
        str(out2),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = pd.read_csv(out2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = WORKER.run(DistContext())
    finally:
        torch.set_num_threads(threads)
    assert len(one) == len(two) and set(one.metric) == {"agreement", "kl", "top1", "top5"}
    pd.testing.assert_frame_equal(one[["model", "stage", "metric"]], two[["model", "stage", "metric"]])
    np.testing.assert_array_equal(one.rel_size.to_numpy(), two.rel_size.to_numpy())
    counts = one.metric != "kl"
    np.testing.assert_allclose(two.value[counts], one.value[counts], rtol=0, atol=1e-9)
    np.testing.assert_allclose(two.value[~counts], one.value[~counts], rtol=1e-12, atol=1e-15)
    assert (one.value[~counts] > 1e-3).any()  # truncation moved the predictions


def _write_images(root: Path, folders: list[str], per_folder: int = 2) -> None:
    rng = np.random.default_rng(0)
    for f in folders:
        (root / f).mkdir(parents=True)
        for i in range(per_folder):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / f / f"{i}.png")


def _tiny_transform():
    return transforms.Compose([transforms.Resize((64, 64)), transforms.ToTensor()])


def test_synset_folders_give_accuracy(tmp_path, model):
    _write_images(tmp_path, ["n01440764", "n01443537"])  # IN-1k classes 0 and 1
    items = list_images(tmp_path)
    ok, why = labels_available(items)
    assert ok and [it.label for it in items] == [0, 0, 1, 1]
    batches = ImageBatches(items, _tiny_transform(), batch_size=3, with_labels=True)
    res = truncation_sweep(model, batches, rel_sizes=[0.5], stages=[3])
    assert res.n_images == 4 and res.n_labelled == 4 and not res.notes
    assert {"top1", "top5"} <= set(res.table.metric)


def test_other_folders_give_label_free_metrics(tmp_path, model):
    _write_images(tmp_path, ["cats", "dogs"], per_folder=1)
    (tmp_path / "dogs" / "broken.png").write_bytes(b"not an image")
    items = list_images(tmp_path)
    ok, why = labels_available(items)
    assert not ok and "not IN-1k synset" in why
    batches = ImageBatches(items, _tiny_transform(), batch_size=4, with_labels=ok)
    res = truncation_sweep(model, batches, rel_sizes=[0.5], stages=[3])
    assert set(res.table.metric) == {"agreement", "kl"} and "no labels" in res.notes[0]
    assert res.n_images == 2 and len(batches.skipped) == 1 and "broken.png" in batches.skipped[0][0]
    assert math.isnan(res.table[res.table.stage == BASELINE_STAGE].rel_size.iloc[0])


def test_fast_sweep_equals_full_recomputation_per_setting(model, data):
    x = data[0]
    stages, rels = [0, 1, 2, 3], [0.3, 1.0, 1.9, 2.0]  # 1.9 keeps the whole kernel of stage 3 only
    res = truncation_sweep(model, [(x[:4], None), (x[4:], None)], name="m", rel_sizes=rels, stages=stages)
    from benchmarks.truncation_benchmark import full_recompute  # one whole forward per setting

    naive = full_recompute(model, [(x, None)], rels, stages)
    for (s, r), (agree, kl) in naive.items():
        assert _value(res.table, s, r, "agreement") == pytest.approx(agree)
        assert _value(res.table, s, r, "kl") == pytest.approx(kl, rel=1e-4, abs=1e-9)
    assert naive[(0, 0.3)][1] > 1e-3  # the comparison is not between unchanged models


def test_settings_that_keep_the_whole_kernel_run_no_forward(model, data):
    from hpx_analysis.truncation import whole_kernel_settings

    x = data[0]
    # 13 / 7 = 1.857 <= 1.9 keeps stage 3's whole 13-tap kernel; stage 0's 111 taps on 56 need 1.98
    assert whole_kernel_settings(model, [(0, 1.9), (3, 1.9), (3, 1.8), (0, 2.0)]) == {(3, 1.9), (0, 2.0)}
    images_through = {i: 0 for i in range(4)}
    head_images = []
    handles = [
        model.stages[i].register_forward_hook(
            lambda mod, inp, out, i=i: images_through.__setitem__(i, images_through[i] + inp[0].shape[0])
        )
        for i in range(4)
    ]
    handles.append(model.head.register_forward_hook(lambda mod, inp, out: head_images.append(inp[0].shape[0])))
    try:
        truncation_sweep(model, [(x[:4], None), (x[4:], None)], rel_sizes=[0.5, 1.9, 2.0], stages=[0, 3])
    finally:
        for h in handles:
            h.remove()
    n = x.shape[0]
    # the untruncated pass (every stage once), stage 0 at 0.5 and 1.9 (stages 0-3 and the head for
    # each) and stage 3 at 0.5 (stage 3 and the head); 2.0 (both stages) and stage 3 at 1.9 run nothing
    assert images_through == {0: 3 * n, 1: 3 * n, 2: 3 * n, 3: 4 * n}
    assert sum(head_images) == 4 * n


def test_truncation_for_model_wants_a_loaded_model(model):
    from hpx_analysis.truncation import truncation_for_model

    with pytest.raises(TypeError, match="expects a LoadedModel.*got HyenaMetaFormer.*truncation_sweep"):
        truncation_for_model(model, [])
    with pytest.raises(TypeError, match="expects a LoadedModel.*got str"):
        truncation_for_model("hpx_former_s4", [])
