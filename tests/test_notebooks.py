"""The notebooks in notebooks/ run top to bottom (nbclient, the venv's ``python3`` kernel) and
are what ``notebooks/generate.py`` writes (committed without outputs)."""

import importlib.util
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = (
    "erf_comparison.ipynb",
    "erf_stages.ipynb",
    "kernel_gallery.ipynb",
    "coverage.ipynb",
    "truncation_sweep.ipynb",
    "global_context_probe.ipynb",
    "interactions.ipynb",
    "two_stage_probes.ipynb",
)
CELL_TIMEOUT_S = 600  # generous: a cell takes seconds, but CI machines may be busy


def _generator():
    spec = importlib.util.spec_from_file_location("notebook_generator", NOTEBOOK_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_notebooks_are_generated_and_have_no_outputs():
    gen = _generator()
    assert sorted(gen.NOTEBOOKS) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        text = (NOTEBOOK_DIR / name).read_text()
        assert text == gen.render(name), f"{name} differs from notebooks/generate.py; rerun it"
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    env_before = os.environ.get("MPLBACKEND")
    os.environ.pop("MPLBACKEND", None)  # let the kernel use its inline backend
    try:
        client = NotebookClient(
            nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        client.execute()
    finally:
        if env_before is not None:
            os.environ["MPLBACKEND"] = env_before
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    figures = sum(c.source.rstrip().endswith("\nfig") for c in code)
    assert figures and len(images) == figures, f"{name}: {len(images)} figure(s) shown, {figures} expected"


def test_prose_states_no_finding_the_figures_do_not_show():
    """Findings are printed from the measured numbers (a code cell), not asserted in the text:
    with random-init models, or ERFs that differ in size, such claims can contradict the figure."""
    gen = _generator()
    claims = ("whole image from the first stage", "show the same difference")
    for name, cells in gen.NOTEBOOKS.items():
        prose = " ".join(" ".join(text.split()) for kind, text in cells if kind == "md")
        assert not [c for c in claims if c in prose], name
    probe = " ".join(text for kind, text in gen.NOTEBOOKS["global_context_probe.ipynb"] if kind == "code")
    assert 'erf.settings = {"model": name' in probe  # the ERF panels are titled by model, not "model"
    stages = " ".join(text for kind, text in gen.NOTEBOOKS["erf_stages.ipynb"] if kind == "code")
    assert "r90" in stages and "print(f" in stages and "result.weights" in stages
