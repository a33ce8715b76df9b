"""ERF computation: closed-form cases, exact batching, caller's model untouched, non-finite
gradients, captum methods, resume and the two-process gloo run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from torch import nn

import hpx_analysis  # noqa: F401  (registers the models)
from hpx_analysis.erf import (
    ErfError,
    ErfSettings,
    KeyedInput,
    accumulate_erf,
    centre_unit,
    compute_erf,
    contribution_maps,
    erf_result,
    frozen_for_erf,
    last_feature_map,
)
from hpx_analysis.erf.run import partial_files, run_erf
from hpx_analysis.erf.state import ErfAccumulator, ErfStateError
from hpx_analysis.settings import Hooks, RunContext

HERE = Path(__file__).parent


class ConvFeatures(nn.Module):
    """``forward_features`` = one convolution (odd kernel, 'same' padding)."""

    def __init__(self, out_ch: int = 4, k: int = 5, seed: int = 0, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, out_ch, k, padding=k // 2, bias=True).to(dtype)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g, dtype=dtype))
            self.conv.bias.copy_(torch.randn(out_ch, generator=g, dtype=dtype))

    def forward_features(self, x):
        return self.conv(x)


class LinearFeatures(nn.Module):
    """``forward_features`` = a linear map of the flattened image onto a (C, 1, 1) map."""

    def __init__(self, size: int, out_ch: int = 3, seed: int = 1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(out_ch, 3 * size * size, generator=g, dtype=torch.float64))

    def forward_features(self, x):
        return (x.flatten(1) @ self.weight.T)[:, :, None, None]


class SmallNet(nn.Module):
    """A nonlinear float64 CNN with batch norm and dropout (eval mode makes them per-image)."""

    def __init__(self, seed: int = 2):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.GELU(),
            nn.Dropout(0.5),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 6, 3, padding=2, dilation=2),
        ).double()
        with torch.no_grad():
            self.body[1].running_mean.uniform_(-0.5, 0.5)
            self.body[1].running_var.uniform_(0.5, 2.0)
        self.calls = 0

    def forward_features(self, x):
        self.calls += x.shape[0]
        return self.body(x)


class SquareThenConv(ConvFeatures):
    """Gradient 2 x w: a NaN pixel in the receptive field makes the map non-finite."""

    def forward_features(self, x):
        return self.conv(x * x)


def images(n: int, size: int = 9, seed: int = 0, dtype=torch.float64) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, size, size, generator=g, dtype=dtype) for _ in range(n)]


def expected_conv_map(model: ConvFeatures, x: torch.Tensor) -> np.ndarray:
    """Closed form: the centre unit is sum_c ReLU(y_c); its gradient is the sum of the
    kernels of the active channels, placed around the centre (cross-correlation)."""
    w = model.conv.weight.detach().numpy()
    b = model.conv.bias.detach().numpy()
    k = w.shape[-1]
    h, wd = x.shape[-2:]
    ci, cj = h // 2, wd // 2
    xp = np.pad(x.numpy(), ((0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    patch = xp[:, ci : ci + k, cj : cj + k]  # the input window seen by the centre unit
    y = (w * patch[None]).sum((1, 2, 3)) + b
    grad_window = w[y > 0].sum(0)  # (3, k, k)
    grad = np.zeros((3, h + 2 * (k // 2), wd + 2 * (k // 2)))
    grad[:, ci : ci + k, cj : cj + k] = grad_window
    grad = grad[:, k // 2 : k // 2 + h, k // 2 : k // 2 + wd]
    return np.maximum(grad, 0).sum(0)


def test_single_convolution_matches_closed_form():
    model = ConvFeatures()
    xs = images(4, size=11)
    res = compute_erf(model, xs)
    expected = np.mean([expected_conv_map(model, x) for x in xs], axis=0)
    assert res.matrix.dtype == np.float64 and res.matrix.shape == (11, 11)
    np.testing.assert_allclose(res.matrix, expected, rtol=1e-12, atol=1e-14)
    # only the 5 x 5 window around the centre can contribute
    outside = res.matrix.copy()
    outside[3:8, 3:8] = 0
    assert np.all(outside == 0) and res.matrix[3:8, 3:8].sum() > 0


def test_even_sized_map_uses_h_over_2():
    model = ConvFeatures(k=3)
    xs = images(2, size=8)
    res = compute_erf(model, xs)
    expected = np.mean([expected_conv_map(model, x) for x in xs], axis=0)
    np.testing.assert_allclose(res.matrix, expected, rtol=1e-12, atol=1e-14)
    assert res.matrix[3:6, 3:6].sum() == pytest.approx(res.matrix.sum())


def test_linear_map_gradient_is_the_weights():
    size = 6
    model = LinearFeatures(size)
    xs = images(3, size=size, seed=5)
    res = compute_erf(model, xs)
    w = model.weight.detach().numpy().reshape(-1, 3, size, size)
    maps = []
    for x in xs:
        active = (model.weight.detach().numpy() @ x.numpy().ravel()) > 0
        maps.append(np.maximum(w[active].sum(0), 0).sum(0))
    np.testing.assert_allclose(res.matrix, np.mean(maps, axis=0), rtol=1e-12)


def test_batching_is_exact_float64():
    model = SmallNet()
    xs = images(5, size=16, seed=3)
    single = compute_erf(model, xs, batch_size=1).matrix
    batched = compute_erf(model, xs, batch_size=3).matrix  # batches of 3 and 2
    assert np.abs(single).max() > 0
    np.testing.assert_allclose(batched, single, rtol=1e-12, atol=1e-15)


def test_batching_hyenapixel_float32():
    torch.manual_seed(0)
    model = timm.create_model("hpx_former_s4")
    xs = images(3, size=64, seed=4, dtype=torch.float32)
    single = contribution_maps(model.eval(), torch.stack(xs[:1]))[0]
    with frozen_for_erf(model):
        batch = contribution_maps(model, torch.stack(xs))
        one = contribution_maps(model, torch.stack(xs[:1]))[0]
    # float32: batch size changes the matmul blocking, so allow rounding (2e-5 of the maximum);
    # the float64 test above checks exactness
    tol = 2e-5 * float(one.abs().max())
    np.testing.assert_allclose(batch[0].numpy(), one.numpy(), rtol=1e-4, atol=tol)
    np.testing.assert_allclose(one.numpy(), single.numpy(), rtol=1e-4, atol=tol)


def _hooks(model):
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


def test_callers_model_left_as_found():
    model = SmallNet()
    model.train()
    model.body[0].weight.requires_grad_(False)
    model.body[3].training = False  # a mixed train/eval state must come back as it was
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    hooks = _hooks(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for method in ("grad", "saliency", "integrated_gradients"):
        compute_erf(model, images(2, size=16), method=method, ig_steps=4)
        assert [p.requires_grad for p in model.parameters()] == flags
        assert [m.training for m in model.modules()] == modes
        assert _hooks(model) == hooks
        assert all(p.grad is None for p in model.parameters())
        for k, v in model.state_dict().items():
            assert torch.equal(v, state[k]), k


def test_model_runs_in_eval_mode():
    model = SmallNet()
    model.train()
    xs = images(2, size=16, seed=7)
    a = compute_erf(model, xs).matrix
    b = compute_erf(model.eval(), xs).matrix
    np.testing.assert_array_equal(a, b)  # dropout and batch statistics were off


def test_saliency_and_integrated_gradients():
    model = ConvFeatures()
    xs = images(3, size=11)
    sal = compute_erf(model, xs, method="saliency")
    # saliency: sum over colour channels of |gradient|
    w = model.conv.weight.detach().numpy()
    expected = []
    for x in xs:
        xp = np.pad(x.numpy(), ((0, 0), (2, 2), (2, 2)))
        y = (w * xp[None, :, 5:10, 5:10]).sum((1, 2, 3)) + model.conv.bias.detach().numpy()
        m = np.zeros((11, 11))
        m[3:8, 3:8] = np.abs(w[y > 0].sum(0)).sum(0)
        expected.append(m)
    np.testing.assert_allclose(sal.matrix, np.mean(expected, axis=0), rtol=1e-10)
    # integrated gradients of a linear model = input x weights (exact for any step count)
    lin = LinearFeatures(5, out_ch=1)
    xs = [x.abs() for x in images(2, size=5, seed=9)]
    xs = [x if float(lin.weight.detach() @ x.ravel()) > 0 else -x for x in xs]  # unit active along the path
    ig = compute_erf(lin, xs, method="integrated_gradients", ig_steps=8)
    wt = lin.weight.detach().numpy().reshape(3, 5, 5)
    exp_ig = np.mean([np.abs(x.numpy() * wt).sum(0) for x in xs], axis=0)
    np.testing.assert_allclose(ig.matrix, exp_ig, rtol=1e-6)


def test_nonfinite_gradients_counted_and_excluded():
    model = SquareThenConv(k=3)
    xs = images(3, size=7)
    bad = xs[1].clone()
    bad[0, 3, 3] = float("nan")
    res = compute_erf(model, [xs[0], bad, xs[2]], batch_size=3)
    assert res.num_images == 2 and res.nonfinite_values > 0
    assert res.skipped[0]["key"] == "tensor:1" and "non-finite" in res.skipped[0]["reason"]
    clean = compute_erf(model, [xs[0], xs[2]]).matrix
    np.testing.assert_allclose(res.matrix, clean, rtol=1e-12)
    assert res.as_dict()["nonfinite_values"] == res.nonfinite_values


def test_bad_arguments():
    model = ConvFeatures()
    with pytest.raises(ErfError, match="method"):
        compute_erf(model, images(1), method="occlusion")
    with pytest.raises(ErfError, match="CUDA"):
        compute_erf(model, images(1), precision="bf16")
    with pytest.raises(ErfError, match="CUDA"):
        compute_erf(model, images(1), precision="tf32")
    with pytest.raises(ErfError, match="same size"):
        compute_erf(model, images(1, size=9) + images(1, size=11))
    with pytest.raises(ErfError, match="no image"):
        compute_erf(model, [])
    with pytest.raises(ErfError, match=r"\(3, H, W\)"):
        compute_erf(model, [torch.zeros(1, 9, 9)])


def test_feature_map_layouts():
    x = torch.randn(2, 3, 32, 32)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=0).eval()
    fmap = last_feature_map(vit, x)
    assert fmap.shape == (2, vit.embed_dim, 2, 2)
    tokens = vit.forward_features(x)
    assert torch.equal(fmap[:, :, 1, 0], tokens[:, vit.num_prefix_tokens + 2])

    class NHWC(nn.Module):
        output_fmt = "NHWC"

        def forward_features(self, x):
            return x.permute(0, 2, 3, 1)

    assert torch.equal(last_feature_map(NHWC(), x), x)
    assert torch.equal(centre_unit(x), torch.relu(x[:, :, 16, 16]).sum(1))


def test_image_files_loaded_and_bad_ones_skipped(tmp_path):
    from PIL import Image

    from hpx_analysis.io.images import ImageItem

    rng = np.random.default_rng(0)
    good = tmp_path / "good.png"
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(good)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(rng.integers(0, 255, (20, 20, 4), dtype=np.uint8), mode="RGBA").save(rgba)
    deep = tmp_path / "deep.png"
    Image.fromarray(rng.integers(0, 65535, (20, 20), dtype=np.uint16)).save(deep)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((3, 3, 3), dtype=np.uint8)).save(tiny)
    items = [ImageItem(str(p)) for p in (good, corrupt, rgba, tiny, deep)]
    model = ConvFeatures(dtype=torch.float32)
    res = compute_erf(model, items, size=16, batch_size=2)
    assert res.used == [str(good), str(rgba), str(deep)]
    skipped = {s["key"]: s["reason"] for s in res.skipped}
    assert set(skipped) == {str(corrupt), str(tiny)}
    assert "unreadable" in skipped[str(corrupt)] and "small" in skipped[str(tiny)]
    assert res.matrix.shape == (16, 16)


def test_image_files_read_on_threads_give_the_same_run(tmp_path):
    from PIL import Image

    from hpx_analysis.io.images import ImageItem

    rng = np.random.default_rng(3)
    paths = []
    for i in range(7):
        p = tmp_path / f"img{i}.png"
        if i == 3:
            p.write_bytes(b"not a png")
        else:
            Image.fromarray(rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    items = [ImageItem(str(p)) for p in paths]
    model = ConvFeatures(dtype=torch.float32)
    plain = compute_erf(model, items, size=16, batch_size=2, loader_threads=0)
    threaded = compute_erf(model, items, size=16, batch_size=2, loader_threads=3)
    assert threaded.used == plain.used == [str(p) for i, p in enumerate(paths) if i != 3]
    assert threaded.skipped == plain.skipped and len(plain.skipped) == 1
    np.testing.assert_array_equal(threaded.matrix, plain.matrix)


def test_fp32_passes_run_without_tf32():
    class RecordsTF32(ConvFeatures):
        seen = []

        def forward_features(self, x):
            self.seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
            return super().forward_features(x)

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        compute_erf(RecordsTF32(dtype=torch.float32), images(2, size=9), batch_size=2)
        assert RecordsTF32.seen == [(False, False)]
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32  # restored
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_tf32_mode_sets_tf32_and_restores_the_callers_flags():
    from hpx_analysis.erf.compute import _precision_mode

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with _precision_mode(torch.device("cuda"), "tf32"):  # flags only: no CUDA call is made
            assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_an_interrupt_keeps_the_batch_computed_before_it():
    """Batches are pipelined (a batch is added while the next one is computed): a failure in
    the second batch must still add the first, once."""

    class FailsOnSecondBatch(ConvFeatures):
        calls = 0

        def forward_features(self, x):
            FailsOnSecondBatch.calls += 1
            if FailsOnSecondBatch.calls == 2:
                raise Interrupt
            return super().forward_features(x)

    model, xs = FailsOnSecondBatch(), images(4)
    state, seen = ErfAccumulator(), []
    with pytest.raises(Interrupt):
        accumulate_erf(model, xs, state, ErfSettings(batch_size=2), hooks=Hooks(progress=seen.append))
    assert state.used == ["tensor:0", "tensor:1"] and seen == [2]
    np.testing.assert_allclose(state.mean(), compute_erf(ConvFeatures(), xs[:2]).matrix, rtol=1e-12)


class FitsTwoImages(SmallNet):
    """Runs out of (pretend) device memory on passes of more than two images."""

    def forward_features(self, x):
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("pretend: the device is out of memory")
        return super().forward_features(x)


def test_out_of_memory_halves_the_pass_and_keeps_the_matrix():
    xs = images(7, size=12)
    reference = compute_erf(SmallNet(), xs, batch_size=1)
    model = FitsTwoImages()
    res = compute_erf(model, xs, batch_size=8)
    np.testing.assert_allclose(res.matrix, reference.matrix, rtol=1e-12)
    assert res.num_images == 7 and res.images_per_pass == 2 and res.as_dict()["images_per_pass"] == 2
    assert model.calls == 7  # the passes that ran out of memory computed nothing
    assert compute_erf(SmallNet(), xs, batch_size=4).images_per_pass == 4


class CuFftFitsTwoImages(SmallNet):
    """Fails like a cuFFT plan that cannot be allocated on passes of more than two images."""

    def forward_features(self, x):
        if x.shape[0] > 2:
            raise RuntimeError("cuFFT error: CUFFT_ALLOC_FAILED")
        return super().forward_features(x)


def test_a_gpu_library_failing_to_allocate_also_halves_the_pass():
    xs = images(5, size=12)
    model = CuFftFitsTwoImages()
    res = compute_erf(model, xs, batch_size=4)
    np.testing.assert_allclose(res.matrix, compute_erf(SmallNet(), xs, batch_size=1).matrix, rtol=1e-12)
    assert res.images_per_pass == 2 and model.calls == 5


def test_other_runtime_errors_are_raised_without_retrying():
    class Broken(SmallNet):
        def forward_features(self, x):
            self.calls += 1
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    model = Broken()
    with pytest.raises(RuntimeError, match="illegal memory access"):
        compute_erf(model, images(4, size=12), batch_size=4)
    assert model.calls == 1


def test_out_of_memory_on_one_image_is_raised():
    class NeverFits(SmallNet):
        def forward_features(self, x):
            raise torch.OutOfMemoryError("pretend")

    with pytest.raises(torch.OutOfMemoryError):
        compute_erf(NeverFits(), images(2, size=12), batch_size=2)


def test_batch_sums_are_added_once_per_image():
    acc = ErfAccumulator()
    acc.add_sum(["a", "b"], 3 * np.ones((2, 2), dtype=np.float32))
    acc.add("c", np.ones((2, 2)))
    assert acc.used == ["a", "b", "c"] and acc.count == 3 and acc.total.dtype == np.float64
    np.testing.assert_array_equal(acc.mean(), 4 / 3 * np.ones((2, 2)))
    with pytest.raises(ErfStateError, match="already"):
        acc.add_sum(["d", "b"], np.ones((2, 2)))
    with pytest.raises(ErfStateError, match="already"):
        acc.add_sum(["d", "d"], np.ones((2, 2)))
    with pytest.raises(ErfStateError):
        acc.add_sum([], np.ones((2, 2)))
    assert acc.used == ["a", "b", "c"]  # refused sums leave the state as it was
    np.testing.assert_array_equal(acc.total, 4 * np.ones((2, 2)))


# ----------------------------------------------------------------------------- resume
class Interrupt(Exception):
    """Raised by a callback to stop an ERF run part-way."""


def _resumable(model, xs, guard, stem=None, resume=False, progress=None):
    """run_erf in batches of two, made into its result."""
    hooks = Hooks(progress=progress) if progress is not None else None
    state, info = run_erf(model, xs, ErfSettings(batch_size=2), guard, stem, RunContext(resume=resume), hooks)
    return erf_result(state, info)


def test_resume_equals_uninterrupted_run(tmp_path):
    xs = images(7, size=16, seed=11)
    settings = {"model": "small", "size": 16}
    full = _resumable(SmallNet(), xs, settings)

    model = SmallNet()
    stem = tmp_path / "erf_small.partial"
    seen = []

    def stop_after_two_batches(n):
        seen.append(n)
        if len(seen) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        _resumable(model, xs, settings, stem, progress=stop_after_two_batches)
    saved = ErfAccumulator.load(partial_files(stem)[0])
    assert saved.used == ["tensor:0", "tensor:1", "tensor:2", "tensor:3"]
    calls_before = model.calls
    resumed = _resumable(model, xs, settings, stem, resume=True)
    assert model.calls - calls_before == 3  # only the three missing images were computed
    assert sorted(resumed.used) == sorted(full.used) and len(set(resumed.used)) == 7
    np.testing.assert_allclose(resumed.matrix, full.matrix, rtol=1e-13)

    # resuming a finished run adds nothing and counts nothing twice
    again = _resumable(model, xs, settings, stem, resume=True)
    assert again.num_images == 7
    np.testing.assert_allclose(again.matrix, full.matrix, rtol=1e-13)

    # without --resume the partial state is discarded; other settings refuse to resume
    with pytest.raises(ErfStateError, match="other settings"):
        _resumable(model, xs, {**settings, "size": 32}, stem, resume=True)


def test_accumulator_refuses_double_counting(tmp_path):
    acc = ErfAccumulator(settings={"a": 1})
    acc.add("x", np.ones((2, 2)))
    with pytest.raises(ErfStateError):
        acc.add("x", np.ones((2, 2)))
    acc.save(tmp_path / "s")
    loaded = ErfAccumulator.load(tmp_path / "s")
    assert loaded.used == ["x"] and loaded.total.dtype == np.float64
    with pytest.raises(ErfStateError, match="overlap"):
        loaded.merge(acc)
    other = ErfAccumulator(settings={"a": 1})
    other.add("y", 3 * np.ones((2, 2)))
    np.testing.assert_array_equal(loaded.merge(other).mean(), 2 * np.ones((2, 2)))


def test_keyed_inputs_are_resumed_by_key():
    model = ConvFeatures()
    xs = images(3)
    state = ErfAccumulator()
    compute_erf(model, [KeyedInput(xs[0], "a"), KeyedInput(xs[1], "b")], state=state)
    res = compute_erf(model, [KeyedInput(x, k) for x, k in zip(xs, "abc")], state=state)
    assert res.used == ["a", "b", "c"]
    np.testing.assert_allclose(res.matrix, compute_erf(model, xs).matrix, rtol=1e-13)


# ----------------------------------------------------------------------------- two processes
@pytest.mark.slow
def test_two_gloo_processes_equal_single_process(tmp_path):
    out = tmp_path / "dist"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HERE / "helpers" / "erf_dist_worker.py"),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("erf_dist_worker", HERE / "helpers" / "erf_dist_worker.py")
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    worker_model, worker_images = worker.worker_model, worker.worker_images
    single = compute_erf(worker_model(), worker_images())
    dist_matrix = np.load(out / "matrix.npy")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["world_size"] == 2
    assert sorted(meta["used"]) == sorted(single.used)
    np.testing.assert_allclose(dist_matrix, single.matrix, rtol=1e-12)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("erf_worker.partial")) == [
        "matrix.npy",
        "meta.json",
    ]


def test_centre_vector_of_our_models_gives_the_erf_of_the_whole_feature_map():
    torch.manual_seed(0)
    model = timm.create_model("hpx_former_s12")
    xs = torch.stack(images(2, size=64, seed=5, dtype=torch.float32))
    with frozen_for_erf(model):
        fast = contribution_maps(model, xs)
        model.forward_features_at = None  # hides the method: the generic path through forward_features
        try:
            whole = contribution_maps(model, xs)
        finally:
            del model.forward_features_at
    assert float(whole.abs().max()) > 0
    np.testing.assert_allclose(fast.numpy(), whole.numpy(), rtol=1e-4, atol=2e-5 * float(whole.abs().max()))
