"""Shared fixtures: small (S4) models of the family, the bundled photographs, and a process
left as the tests found it (the app's start-up changes the C allocator's settings and the
warning format; in-process CLI runs must not)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

import hpx_analysis  # noqa: F401  (registers the models with timm)
from hpx_analysis.execution.allocator import HEAP_REUSE_ENV
from hpx_analysis.io.images import list_images

S4_MODELS = {"hpx": "hpx_former_s4", "hb": "hb_former_s4"}


@pytest.fixture(autouse=True)
def _process_state(monkeypatch):
    """In-process CLI runs leave malloc's settings alone; the warning format is restored."""
    monkeypatch.setenv(HEAP_REUSE_ENV, "0")
    formatwarning = warnings.formatwarning
    yield
    warnings.formatwarning = formatwarning


@pytest.fixture
def make_s4() -> Callable[..., nn.Module]:
    """``make_s4("hpx" | "hb" | a model name, seed=0)``: a fresh S4-sized model, eval mode,
    random init from ``seed`` (every call builds a new one, so a test may change it)."""

    def make(kind: str = "hpx", seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return timm.create_model(S4_MODELS.get(kind, kind)).eval()

    return make


@pytest.fixture(scope="session")
def bundled_images() -> list[Path]:
    """The photographs bundled with scikit-image, in the order the analyses read them."""
    return [Path(item.path) for item in list_images(None)]
