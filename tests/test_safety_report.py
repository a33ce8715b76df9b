"""Issue 16, item 1: ``report`` checks every input before it writes, builds the new report in a
staging folder and swaps it in only when complete; a failing run leaves the old report."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import hpx_analysis.report.build as build
from hpx_analysis.cli.main import app
from hpx_analysis.report import QUICK, SECTIONS


def invoke(*args):
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r, " ".join(r.output.split())


@pytest.fixture
def old_report(tmp_path) -> Path:
    out = tmp_path / "rep"
    for section in SECTIONS:
        (out / section).mkdir(parents=True)
        (out / section / "old.csv").write_text(f"old {section}")
    (out / "report.md").write_text("old report")
    (out / "notes.txt").write_text("the user's own file")
    return out


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "args, message",
    [
        (("--model-weights", "hpx_s18=/nonexistent/weights.pth"), "checkpoint file not found"),
        (("--model-weights", "hpx_s18=randon"), "unknown weights 'randon'"),
        (("--images", "EMPTY"), "no image files"),
    ],
)
def test_bad_input_leaves_the_old_report_untouched(tmp_path, old_report, monkeypatch, args, message):
    def no_work(*a, **k):
        raise AssertionError("a section ran before the inputs were checked")

    monkeypatch.setattr(build, "run_section", no_work)
    (tmp_path / "empty").mkdir()
    args = [str(tmp_path / "empty") if a == "EMPTY" else a for a in args]
    before = snapshot(old_report)
    r, text = invoke("report", "--quick", "--out", old_report, "--device", "cpu", *args)
    assert r.exit_code == 2, text
    assert message in text and "Traceback" not in text
    assert snapshot(old_report) == before


def fake_build(fail_after: str | None):
    def _build(staging, settings, specs, dev, seed, images, command, log):
        for section in SECTIONS:
            (staging / section).mkdir()
            (staging / section / "new.csv").write_text(f"new {section}")
            if section == fail_after:
                raise RuntimeError("the truncation sweep failed")
        (staging / "report.md").write_text("new report")
        return {"total_seconds": 0}, {}

    return _build


def test_a_failing_section_leaves_the_old_report_and_no_staging(old_report, monkeypatch):
    monkeypatch.setattr(build, "_build", fake_build("truncation"))
    before = snapshot(old_report)
    with pytest.raises(RuntimeError, match="sweep failed"):
        build.build_report(old_report, QUICK, device="cpu")
    assert snapshot(old_report) == before
    assert sorted(p.name for p in old_report.iterdir()) == sorted([*SECTIONS, "report.md", "notes.txt"])


def test_a_complete_report_replaces_the_old_one_and_keeps_other_files(old_report, monkeypatch):
    monkeypatch.setattr(build, "_build", fake_build(None))
    build.build_report(old_report, QUICK, device="cpu")
    after = snapshot(old_report)
    assert after == {
        **{f"{s}/new.csv": f"new {s}" for s in SECTIONS},
        "report.md": "new report",
        "notes.txt": "the user's own file",
    }


def test_a_killed_runs_staging_folder_is_cleared(old_report, monkeypatch):
    (old_report / ".report-new-deadbeef").mkdir()
    (old_report / ".report-new-deadbeef" / "half.csv").write_text("x")
    monkeypatch.setattr(build, "_build", fake_build(None))
    build.build_report(old_report, QUICK, device="cpu")
    assert not list(old_report.glob(".report-*"))
