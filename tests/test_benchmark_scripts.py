"""The benchmark scripts' own logic: the device check (run on the CPU here) and the
published baseline's batched ERF pass."""

from __future__ import annotations

import numpy as np
import timm
import torch

import hpx_analysis  # noqa: F401  (registers the models)
from benchmarks import cuda_check, erf_benchmark, irfft2_backends
from hpx_analysis.models.fast import mkl_irfft2


def test_compare_on_constructed_matrices():
    ref = np.array([[1.0, 3.0], [0.0, 4.0]])
    got = ref + np.array([[0.5, 0.0], [0.0, -1.0]])
    out = cuda_check.compare(got, ref)
    assert out["rel_l1"] == 1.5 / 8.0
    assert out["max_rel"] == 1.0 / 4.0
    assert out["finite"]
    assert not cuda_check.compare(np.full((2, 2), np.nan), ref)["finite"]


def test_device_check_runs_and_passes_on_cpu(capsys):
    assert cuda_check.main(["--device", "cpu", "--models", "hpx_former_s4", "--size", "64"]) == 0
    out = capsys.readouterr().out
    for variant in ("fp32 batch 1", "fp32 batch 2", "fp32 batch 2 ckpt"):
        assert f"hpx_former_s4          {variant}" in out
    assert "bf16" not in out.split("verdict")[1]  # reduced precision is a CUDA variant
    assert "FAIL" not in out


def test_published_batched_pass_is_the_sum_of_single_images():
    torch.manual_seed(0)
    model = timm.create_model("hpx_former_s4").eval()
    x = torch.randn(3, 3, 64, 64)
    batched = erf_benchmark._published_erf_batch(model, x)
    singles = sum(erf_benchmark._published_erf_batch(model, x[i : i + 1]) for i in range(3))
    assert batched.shape == (64, 64)
    np.testing.assert_allclose(batched, singles, rtol=1e-5, atol=1e-6 * singles.max())


def test_inverse_fft_benchmark_prints_every_stage_and_agreement(capsys):
    irfft2_backends.main(["--reps", "1"])
    out = capsys.readouterr().out
    if not mkl_irfft2.available():  # no MKL in this build: the script says so and compares nothing
        assert "falls back to irfftn" in out
        return
    rows = [line.split() for line in out.splitlines() if "ms" in line and " x " in line]
    assert [" ".join(r[:5]) for r in rows] == [f"{c} x {h} x {w}" for c, h, w in irfft2_backends.SHAPES]
    assert all(float(r[-1]) < 1e-5 for r in rows)  # max |difference| / max against irfftn
