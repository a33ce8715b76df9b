"""figures/ is the output of ``hpx-analyze report --quick --out figures --device cpu``, kept current.

The freshness check regenerates the quick report from scratch into a temporary folder and
compares it with the committed figures/ (:func:`hpx_analysis.report.compare_reports`):

- the same files (data, figures, report.md/json);
- data files by value, not pixels: CSV columns, JSON values and npy/npz arrays; numbers
  within rtol = 1e-4, atol = 1e-6 (``numpy.isclose``; float32 results differ in their last
  bits between CPUs and thread counts), arrays with atol at least 1e-4 of their largest
  magnitude (the raw ERF matrices' near-zero tail moves by a few 1e-6 of the maximum between
  1 and 2 threads), text exactly (model names, weights, statuses);
- runtime timings (``median_ms``, ``min_ms``, ``p10_ms``, ``p90_ms``, ``spread``, ``repeats``) and
  everything about the run rather than the
  analysis (seconds, versions, command line, thread count, CPU name, image paths) only for
  their presence, since they depend on the machine.

The quick report uses a seeded random init and the bundled photographs, so it is the same on
every machine. It takes a few minutes on a 2-core CPU.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hpx_analysis import report as rp
from hpx_analysis.report import build_report

REPO = Path(__file__).resolve().parent.parent
REGENERATE = "hpx-analyze report --quick --out figures --device cpu"


@pytest.fixture(scope="module")
def committed_figures(tmp_path_factory) -> Path:
    """figures/ as committed (git HEAD), so that uncommitted changes to figures/ do not make
    this check pass or fail; the working tree's
    figures/ when this is not a git checkout."""
    import subprocess
    import tarfile

    out = tmp_path_factory.mktemp("committed")
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", "HEAD", "figures"], check=True, capture_output=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return REPO / "figures"
    import io

    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(out, filter="data")
    return out / "figures"


def test_committed_figures_are_the_quick_report(committed_figures):
    manifest = json.loads((committed_figures / "report.json").read_text())
    assert manifest["settings"] == rp.QUICK.as_dict(), f"figures/ was not made with --quick; run `{REGENERATE}`"
    assert manifest["device"] == "cpu" and manifest["seed"] == 0
    md = (committed_figures / "report.md").read_text()
    for section in rp.SECTIONS:
        assert f"]({section}/" in md
    for link in [line[line.index("](") + 2 : -1] for line in md.splitlines() if line.startswith("![")]:
        assert (committed_figures / link).is_file(), link


def test_compare_reports_finds_changed_values(committed_figures, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(committed_figures, copy)
    assert rp.compare_reports(committed_figures, copy) == []
    cov = pd.read_csv(copy / "coverage" / "coverage.csv")
    cov.loc[3, "coverage"] *= 1.001
    cov.to_csv(copy / "coverage" / "coverage.csv", index=False)
    erf = json.loads((copy / "erf" / "erf_hpx_former_s18.json").read_text())
    erf["metrics"]["anisotropy"] += 1e-3
    erf["seconds"] += 100.0  # timings are not compared
    (copy / "erf" / "erf_hpx_former_s18.json").write_text(json.dumps(erf))
    (copy / "truncation" / "truncation.png").unlink()
    npy = copy / "erf" / "erf_hb_former_s18.npy"
    m = np.load(npy)
    m[0, 0] += 1e-5 * m.max()  # float noise: within tolerance
    np.save(npy, m)
    assert len(rp.compare_reports(committed_figures, copy)) == 3
    m[m.shape[0] // 2, 3] += 1e-3 * m.max()  # a real change
    np.save(npy, m)
    diffs = rp.compare_reports(committed_figures, copy)
    assert len(diffs) == 4, diffs
    assert any(d.startswith("erf/erf_hb_former_s18.npy: values differ") for d in diffs)
    assert any("coverage/coverage.csv: column 'coverage'" in d and "row 3" in d for d in diffs)
    assert any("erf/erf_hpx_former_s18.json.metrics.anisotropy" in d for d in diffs)
    assert any("truncation/truncation.png: committed but not produced" in d for d in diffs)


@pytest.mark.slow
def test_figures_match_a_fresh_quick_report(committed_figures, tmp_path):
    fresh = tmp_path / "figures"
    build_report(fresh, rp.QUICK, device="cpu", seed=0, command=REGENERATE, log=lambda msg: None)
    diffs = rp.compare_reports(committed_figures, fresh)
    shown = "\n  ".join(diffs[:20]) + (f"\n  ... and {len(diffs) - 20} more" if len(diffs) > 20 else "")
    assert not diffs, (
        f"figures/ is stale: {len(diffs)} difference(s) from a fresh quick report "
        f"(rtol {rp.RTOL:g}, atol {rp.ATOL:g}):\n  {shown}\n"
        f"Regenerate it with `{REGENERATE}` and commit figures/."
    )
