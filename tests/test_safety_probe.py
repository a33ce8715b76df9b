"""The probe commands' safety: ``probe train`` and ``probe eval`` check and lock their output
folder before the work, write each file atomically, and a training run replaces the previous
run's files only once it is complete (a kill, Ctrl-C or a second run never leaves a folder
that mixes two runs or a damaged checkpoint); bad inputs (non-finite learning rate or
training, snapshot steps out of range, non-probe models, an ambiguous ``--images probe``)
end in one line before any work."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import hpx_analysis.io.output as output_module
import hpx_analysis.io.weights as weights_module
import hpx_analysis.probe.evaluate as evaluate_module
import hpx_analysis.probe.train as train_module
from hpx_analysis.cli.main import app
from hpx_analysis.io.output import COMMIT_NAME, LOCK_NAME, STAGING_PREFIX, atomic_file, staged_output
from hpx_analysis.io.weights import load_model
from hpx_analysis.probe.analysis import PROBE_IMAGES_LABEL, PROBE_SOURCE, images_source, is_probe_source
from hpx_analysis.probe.jobs import is_probe_train_file, probe_train_job
from hpx_analysis.probe.train import ProbeTrainSettings, TrainingDivergedError
from hpx_analysis.settings import RunContext
from tests.test_safety_state import Killed
from tests.test_safety_state import _write_steps as state_write_steps

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--steps", "2", "--batch-size", "8", "--warmup", "1"]
QUICK_SETTINGS = dict(steps=2, batch_size=8, warmup=1, val_size=8)


def invoke(args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, " ".join(result.output.split())


def no_work(monkeypatch):
    """Make loading a model (the start of the work) fail the test."""

    def forbidden(*a, **k):
        raise AssertionError("the work started before the inputs were checked")

    monkeypatch.setattr(weights_module, "load_model", forbidden)


def one_error_line(result, text):
    assert result.exit_code == 2, text
    assert "Traceback" not in text and text.startswith("error:"), text
    assert len(result.output.strip().splitlines()) == 1 or text.count("error:") == 1, text


PROBE_COMMANDS = {
    "train": ["probe", "train", "-m", "conv_probe", *QUICK],
    "eval": ["probe", "eval", "-m", "conv_probe=random", "--num-images", "4"],
}


# ----------------------------------------------------------------------------- output folder
@pytest.mark.parametrize("command", sorted(PROBE_COMMANDS))
@pytest.mark.parametrize("case", ["file", "under_file"])
def test_probe_commands_check_the_output_folder_first(tmp_path, monkeypatch, command, case):
    no_work(monkeypatch)
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    out = blocker if case == "file" else blocker / "sub"
    result, text = invoke([*PROBE_COMMANDS[command], "--out", out])
    one_error_line(result, text)
    assert "output folder" in text
    assert blocker.read_text() == "keep me"


def _read_only_folder(tmp_path) -> Path:
    """A folder in which no file can be created: read-only for a user, ``/sys`` for root (root
    writes through permission bits)."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o555)
        return folder
    if os.access("/sys", os.W_OK) and not Path("/sys").is_mount():
        pytest.skip("no read-only location to test with")
    return Path("/sys/hpx-analysis-test")


@pytest.mark.parametrize("command", sorted(PROBE_COMMANDS))
def test_probe_commands_in_a_read_only_folder(tmp_path, monkeypatch, command):
    parent = _read_only_folder(tmp_path)
    no_work(monkeypatch)
    result, text = invoke([*PROBE_COMMANDS[command], "--out", parent / "out"])
    one_error_line(result, text)
    assert "cannot create output folder" in text


@pytest.mark.parametrize("command", sorted(PROBE_COMMANDS))
def test_probe_commands_refuse_a_folder_in_use(tmp_path, monkeypatch, command):
    no_work(monkeypatch)
    with output_module.output_lock(tmp_path):
        result, text = invoke([*PROBE_COMMANDS[command], "--out", tmp_path])
    one_error_line(result, text)
    assert f"in use by another hpx-analyze run (pid {os.getpid()}" in text


# ----------------------------------------------------------------------------- atomic files
def test_atomic_file_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "w.safetensors"
    save_file({"w": torch.ones(3)}, target)
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".safetensors"
        tmp.write_bytes(b"half a checkpoint")
        raise RuntimeError("killed while writing")
    assert torch.equal(load_file(target)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
    with atomic_file(target) as tmp:
        save_file({"w": torch.zeros(2)}, tmp)
    assert torch.equal(load_file(target)["w"], torch.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def _write_steps(monkeypatch, kill_at: int | None) -> list[str]:
    """The write steps of :mod:`tests.test_safety_state` (renames, flushes, whole-file writes)
    and removals of files, each a point where ``Killed`` is raised when it is step ``kill_at``."""
    steps = state_write_steps(monkeypatch, kill_at)
    remove = pathlib.Path.unlink

    def unlink(path, *args, **kwargs):
        if len(steps) == kill_at:
            raise Killed
        steps.append("unlink")
        return remove(path, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    return steps


OLD_RUN = {"conv_probe.safetensors": "old", "conv_probe_step1.safetensors": "old", "train.json": "old"}
NEW_RUN = {"conv_probe.safetensors": "new", "train_log.csv": "new", "train.json": "new"}


def _fake_run(out: Path, files: dict[str, str]) -> None:
    """A run of ``staged_output`` that writes ``files`` and ``record.json`` (its marker)."""
    with staged_output(out, is_probe_train_file, "record.json") as staging:
        for name, text in {**files, "record.json": next(iter(files.values()))}.items():
            with atomic_file(staging / name) as tmp:
                tmp.write_text(text)


def _run_files(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in out.iterdir() if p.is_file() and is_probe_train_file(p.name)}


def test_a_kill_at_every_step_of_a_staged_run_never_mixes_two_runs(tmp_path, monkeypatch):
    old = {**OLD_RUN, "record.json": "old"}
    new = {**NEW_RUN, "record.json": "new"}
    with monkeypatch.context() as m:
        counted = _write_steps(m, None)
        (tmp_path / "count").mkdir()
        _fake_run(tmp_path / "count", NEW_RUN)
    assert len(counted) >= 12
    for kill_at in range(len(counted)):
        out = tmp_path / f"k{kill_at}"
        out.mkdir()
        (out / "notes.txt").write_text("the user's")
        _fake_run(out, OLD_RUN)
        with monkeypatch.context() as m:
            _write_steps(m, kill_at)
            with pytest.raises(Killed):
                _fake_run(out, NEW_RUN)
        files = _run_files(out)
        if "record.json" in files:  # complete: exactly one run, the old or the new
            assert files in (old, new), (kill_at, files)
        else:  # clearly partial (no record), and the next run finishes the move it started
            assert (out / COMMIT_NAME).is_dir(), (kill_at, files)
        _fake_run(out, {"conv_probe.safetensors": "third"})
        assert _run_files(out) == {"conv_probe.safetensors": "third", "record.json": "third"}, kill_at
        assert sorted(p.name for p in out.iterdir()) == ["conv_probe.safetensors", "notes.txt", "record.json"]


def test_a_staging_folder_left_by_a_killed_run_is_removed(tmp_path):
    leftover = tmp_path / f"{STAGING_PREFIX}dead"
    leftover.mkdir()
    (leftover / "conv_probe.safetensors").write_text("half")
    _fake_run(tmp_path, NEW_RUN)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*NEW_RUN, "record.json"])


def test_a_run_that_fails_leaves_the_folder_as_it_was(tmp_path):
    _fake_run(tmp_path, OLD_RUN)
    before = _run_files(tmp_path)
    with pytest.raises(KeyboardInterrupt), staged_output(tmp_path, is_probe_train_file, "record.json") as staging:
        (staging / "conv_probe.safetensors").write_text("new")
        raise KeyboardInterrupt
    with pytest.raises(output_module.OutputError, match="no record.json"):
        with staged_output(tmp_path, is_probe_train_file, "record.json") as staging:
            (staging / "conv_probe.safetensors").write_text("new")
    assert _run_files(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)


def test_probe_train_file_names():
    for name in [
        "train.json",
        "record.json",
        "train_log.csv",
        "hpx_probe.safetensors",
        "conv_probe_step50.safetensors",
    ]:
        assert is_probe_train_file(name), name
    for name in ["notes.txt", "hpx_s18.safetensors", "probe_eval.csv", "conv_probe_stepx.safetensors", "xtrain.json"]:
        assert not is_probe_train_file(name), name


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("snapshots", ["2,50", "0,-1", "4"])
def test_snapshot_steps_outside_the_run_are_refused_before_training(tmp_path, monkeypatch, snapshots):
    no_work(monkeypatch)
    out = tmp_path / "out"
    result, text = invoke(
        ["probe", "train", "-m", "conv_probe", "--steps", "3", "--snapshots", snapshots, "--out", out]
    )
    one_error_line(result, text)
    assert "outside 1..3" in text
    assert not out.exists()
    with pytest.raises(ValueError, match="outside 1..3"):
        ProbeTrainSettings(steps=3, snapshots=[int(s) for s in snapshots.split(",")])
    assert ProbeTrainSettings(steps=3, snapshots=(1, 3)).snapshots == (1, 3)


@pytest.mark.parametrize("lr", ["inf", "nan", "0", "-1e-3"])
def test_a_learning_rate_that_is_not_finite_and_positive_is_refused(tmp_path, monkeypatch, lr):
    no_work(monkeypatch)
    out = tmp_path / "out"
    result, text = invoke(["probe", "train", "-m", "conv_probe", *QUICK, "--lr", lr, "--out", out])
    one_error_line(result, text)
    assert "learning rate" in text
    assert not out.exists()


@pytest.mark.parametrize("model", ["hpx_s18", "resnet18=random", "hpx_s4=random"])
def test_probe_eval_refuses_models_that_are_not_probes(tmp_path, monkeypatch, model):
    no_work(monkeypatch)
    out = tmp_path / "out"
    result, text = invoke(["probe", "eval", "-m", "conv_probe=random", "-m", model, "--out", out])
    one_error_line(result, text)
    assert "is not a probe model" in text and "conv_probe" in text
    assert not out.exists()


def test_probe_train_refuses_models_that_are_not_probes(tmp_path, monkeypatch):
    no_work(monkeypatch)
    result, text = invoke(["probe", "train", "-m", "hpx_s4", *QUICK, "--out", tmp_path / "out"])
    one_error_line(result, text)
    assert "is not a probe model" in text


def test_probe_train_help_says_what_the_weights_of_model_mean():
    result = CliRunner().invoke(app, ["probe", "train", "--help"])
    text = " ".join(result.output.split())
    assert "random init" in text and "continues from those weights" in text


# ----------------------------------------------------------------------------- --images probe
def test_only_the_word_probe_names_the_probe_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert images_source("probe") == PROBE_SOURCE and is_probe_source(images_source("probe"))
    for spelling in ["./probe", "probe/", str(tmp_path / "probe"), "Probe"]:
        assert isinstance(images_source(spelling), Path) and not is_probe_source(images_source(spelling)), spelling
    assert not is_probe_source(Path("probe")) and not is_probe_source(None)
    (tmp_path / "probe").mkdir()
    with pytest.raises(ValueError, match=r"write \./probe"):
        images_source("probe")
    assert isinstance(images_source("./probe"), Path) and not is_probe_source(Path("probe"))
    assert is_probe_source(PROBE_SOURCE)  # in Python the string is the split, a Path the folder


def _photo_folder(folder: Path, n: int = 2) -> None:
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"im{i}.png")


@pytest.mark.parametrize("command", ["erf", "truncation"])
def test_probe_with_a_folder_named_probe_is_refused(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    _photo_folder(tmp_path / "probe")
    no_work(monkeypatch)
    result, text = invoke([command, "-m", "hpx_s4=random", "--images", "probe", "--out", tmp_path / "out"])
    one_error_line(result, text)
    assert "./probe" in text and "test split" in text
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["erf", "truncation"])
def test_dot_slash_probe_reads_the_folder_named_probe(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    _photo_folder(tmp_path / "probe")
    out = tmp_path / "out"
    extra = ["--rel-sizes", "1", "--stages", "0"] if command == "truncation" else []
    args = [command, "-m", "hpx_s4=random", "--images", "./probe", "--size", "64", "--device", "cpu", *extra]
    result, text = invoke([*args, "--out", out])
    assert result.exit_code == 0, text
    records = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert records and PROBE_IMAGES_LABEL not in json.dumps(records)
    assert "probe" in json.dumps(records)  # the folder, as given


# ----------------------------------------------------------------------------- training runs
def _finished_run(out: Path, seed: int = 0, **settings) -> dict[str, bytes]:
    probe_train_job(
        "conv_probe", ProbeTrainSettings(**{**QUICK_SETTINGS, "seed": seed, **settings}), RunContext(out_dir=out)
    )
    return {p.name: p.read_bytes() for p in out.iterdir()}


def _assert_one_run(out: Path) -> None:
    """Every record in ``out`` describes the run whose checkpoint is there."""
    record = json.loads((out / "record.json").read_text())
    train = json.loads((out / "train.json").read_text())
    assert record["config"] == train["config"] and record["init"] == train["init"]
    snaps = {f"conv_probe_step{s}.safetensors" for s in record["snapshots"]}
    assert {p.name for p in out.glob("conv_probe_step*.safetensors")} == snaps
    load_file(out / "conv_probe.safetensors")  # readable


@pytest.mark.slow
def test_a_diverging_run_stops_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    result, text = invoke(["probe", "train", "-m", "conv_probe", *QUICK, "--steps", "5", "--lr", "1e30", "--out", out])
    assert result.exit_code == 2, text
    assert "training diverged at step" in text and "Traceback" not in text
    assert list(out.iterdir()) == []  # no checkpoint, no record, no staging folder, no lock
    model = load_model("conv_probe=random").model
    with pytest.raises(TrainingDivergedError, match="not finite|is nan|is inf"):
        train_module.train_probe(model, **{**QUICK_SETTINGS, "steps": 5, "lr": 1e30})


@pytest.mark.slow
def test_train_starts_from_the_weights_given(tmp_path):
    start = load_model("conv_probe=random", seed=5).model
    ckpt = tmp_path / "start.safetensors"
    save_file({k: v.contiguous() for k, v in start.state_dict().items()}, ckpt)
    out = tmp_path / "out"
    args = ["probe", "train", "-m", f"conv_probe={ckpt}", *QUICK, "--steps", "1", "--lr", "1e-12", "--out", out]
    result, text = invoke(args)
    assert result.exit_code == 0, text
    trained = load_file(out / "conv_probe.safetensors")
    seed0 = load_model("conv_probe=random", seed=0).model.state_dict()
    weight = next(k for k, v in trained.items() if v.ndim == 4)
    torch.testing.assert_close(trained[weight], start.state_dict()[weight], atol=1e-6, rtol=0)
    assert not torch.allclose(trained[weight], seed0[weight])
    for record in ("record.json", "train.json"):
        assert str(ckpt) in json.loads((out / record).read_text())["init"], record


def _kill_when(monkeypatch, owner, name, condition) -> None:
    """Raise Killed in ``owner.name`` when ``condition(*args)`` holds (after the call when it
    writes a file, so that the file is half-written or complete but not yet renamed)."""
    real = getattr(owner, name)

    def call(*args, **kwargs):
        if condition(*args):
            if name == "save_file":
                Path(args[1]).write_bytes(b"half a checkpoint")
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, call)


@pytest.mark.slow
def test_a_killed_rerun_never_mixes_runs_nor_damages_the_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = _finished_run(out, seed=0, snapshots=(1,))
    kills = {
        "after train.json": (evaluate_module, "probe_record", lambda *a: True),
        "in the final checkpoint": (
            train_module,
            "save_file",
            lambda state, path, *a: "conv_probe.safetensors" in Path(path).name,
        ),
        "after the first move into the folder": (
            os,
            "replace",
            lambda src, dst, *a: Path(src).parent.name == COMMIT_NAME and Path(dst).name == "train.json",
        ),
    }
    for where, (owner, name, condition) in kills.items():
        with monkeypatch.context() as m:
            _kill_when(m, owner, name, condition)
            with pytest.raises(Killed):
                probe_train_job("conv_probe", ProbeTrainSettings(**QUICK_SETTINGS, seed=1), RunContext(out_dir=out))
        if (out / "record.json").exists():
            assert {p.name: p.read_bytes() for p in out.iterdir()} == first, where
        else:
            assert (out / COMMIT_NAME).is_dir(), where  # clearly partial; the next run finishes it
    _finished_run(out, seed=2)
    _assert_one_run(out)
    assert json.loads((out / "train.json").read_text())["config"]["seed"] == 2
    assert sorted(p.name for p in out.iterdir()) == [
        "conv_probe.safetensors",
        "record.json",
        "train.json",
        "train_log.csv",
    ]


@pytest.mark.slow
def test_ctrl_c_and_a_second_run_leave_the_finished_run_alone(tmp_path):
    out = tmp_path / "out"
    first = _finished_run(out, seed=0, snapshots=(1,))
    cmd = [sys.executable, "-m", "hpx_analysis.cli.main", "probe", "train", "-m", "conv_probe", "--steps", "5000"]
    cmd += ["--batch-size", "8", "--snapshots", "1", "--seed", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob(f"{STAGING_PREFIX}*/conv_probe_step1.safetensors")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != LOCK_NAME} == first
        result, text = invoke(["probe", "train", "-m", "conv_probe", *QUICK, "--out", out])
        one_error_line(result, text)
        assert f"pid {proc.pid}" in text
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # no staging folder, no lock left
