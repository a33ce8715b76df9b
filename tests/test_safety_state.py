"""Issue 16, items 2 and 3: the resume state is one unit on disk (a kill at any write step
leaves a state that resumes to exactly the uninterrupted result), damaged states end in a
clear error naming the file, and a resumed state must hold only the images asked for."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

from hpx_analysis.erf import ErfSettings, erf_result
from hpx_analysis.erf.run import discard_partial, partial_files, run_erf
from hpx_analysis.erf.state import ErfAccumulator, ErfStateError
from hpx_analysis.settings import RunContext
from tests.test_erf import SmallNet, images

SETTINGS = {"model": "small", "size": 16}


def _run(xs, stem=None, resume=False):
    """run_erf of SmallNet in batches of two, made into its result."""
    state, info = run_erf(SmallNet(), xs, ErfSettings(batch_size=2), SETTINGS, stem, RunContext(resume=resume))
    return erf_result(state, info)


class Killed(BaseException):
    """Stands for kill -9: not an Exception, so nothing on the way catches it."""


def _write_steps(monkeypatch, kill_at: int | None) -> list[str]:
    """Count every file-system write step (whole-file writes, flushes to disk, renames) and
    raise Killed just before step ``kill_at``; returns the list of steps seen."""
    steps: list[str] = []

    def wrap(owner, name):
        real = getattr(owner, name)

        def step(*args, **kwargs):
            if kill_at is not None and len(steps) == kill_at:
                raise Killed
            steps.append(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, step)

    wrap(os, "replace")
    wrap(os, "fsync")
    wrap(np, "savez")
    wrap(pathlib.Path, "write_text")
    return steps


def test_a_kill_at_every_write_step_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    xs = images(5, size=16, seed=3)
    full = _run(xs)
    counted = []
    with monkeypatch.context() as m:
        counted = _write_steps(m, None)
        _run(xs, tmp_path / "count2")
    assert len(counted) >= 8  # several saves, each more than one step
    for kill_at in range(len(counted)):
        stem = tmp_path / f"k{kill_at}" / "erf_small.partial"
        with monkeypatch.context() as m:
            _write_steps(m, kill_at)
            with pytest.raises(Killed):
                _run(xs, stem)
        resumed = _run(xs, stem, resume=True)
        assert sorted(resumed.used) == sorted(full.used), kill_at
        assert resumed.num_images == 5 and len(set(resumed.used)) == 5, kill_at
        np.testing.assert_array_equal(resumed.matrix, full.matrix, err_msg=f"kill before write step {kill_at}")
        discard_partial(stem)
        assert list(stem.parent.iterdir()) == [], kill_at  # no state and no temporary file left


def _saved_state(tmp_path) -> pathlib.Path:
    acc = ErfAccumulator(settings=dict(SETTINGS))
    acc.add("a.png", np.ones((4, 4)))
    acc.add("b.png", 3 * np.ones((4, 4)))
    return acc.save(tmp_path / "s")


def test_a_truncated_state_names_the_file(tmp_path):
    path = _saved_state(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ErfStateError, match=f"{path}.*damaged"):
        ErfAccumulator.load(tmp_path / "s")


def test_a_hand_edited_state_is_refused_not_miscounted(tmp_path):
    path = _saved_state(tmp_path)
    with np.load(path) as data:
        total, meta = data["total"], json.loads(bytes(data["meta"]).decode())
    meta["used"] = ["a.png"]  # one image dropped from the list: the sum holds two
    np.savez(path, total=total, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    with pytest.raises(ErfStateError, match="checksum"):
        ErfAccumulator.load(tmp_path / "s")
    np.savez(path, total=total)  # no record at all
    with pytest.raises(ErfStateError, match=f"{path}.*damaged"):
        ErfAccumulator.load(tmp_path / "s")
    _saved_state(tmp_path)
    assert ErfAccumulator.load(tmp_path / "s").used == ["a.png", "b.png"]


def test_resume_with_fewer_or_other_images_is_refused(tmp_path):
    xs = images(5, size=16, seed=3)
    stem = tmp_path / "erf_small.partial"
    _run(xs, stem)  # state left until discarded
    assert partial_files(stem)
    with pytest.raises(ErfStateError, match="2 image\\(s\\) that are not among the 3"):
        _run(xs[:3], stem, resume=True)
    # the same images resume to the same result, nothing counted twice
    again = _run(xs, stem, resume=True)
    assert again.num_images == 5


def test_cli_resume_with_fewer_images_is_one_clear_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import hpx_analysis.erf.compute as erf_module
    from hpx_analysis.cli.main import app

    real, calls = erf_module.contribution_maps, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(erf_module, "contribution_maps", interrupted)
    out = tmp_path / "out"
    args = ["erf", "-m", "hpx_s4=random", "--size", "64", "--device", "cpu", "--out", str(out)]
    first = CliRunner().invoke(app, [*args, "--num-images", "3"])
    assert first.exit_code == 130, first.output  # two images saved
    monkeypatch.setattr(erf_module, "contribution_maps", real)
    second = CliRunner().invoke(app, [*args, "--num-images", "1", "--resume"])
    text = " ".join(second.output.split())
    assert second.exit_code == 2, text
    assert "1 image(s) that are not among the 1 image(s) asked for" in text and "Traceback" not in text
    assert not (out / "erf_hpx_former_s4.npy").exists()
