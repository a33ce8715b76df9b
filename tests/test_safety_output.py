"""Issue 16, items 5 and 6: output folders are checked before the work (a file, a path under a
file, a read-only or full folder fail at once with one line), later write errors end in one
line without temporary files, and a second run into a folder another run holds is refused."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hpx_analysis.erf.job as erf_job_module
import hpx_analysis.io.weights as weights_module
from hpx_analysis.cli.main import app
from hpx_analysis.coverage import CoverageResult
from hpx_analysis.io.output import LOCK_NAME, OutputBusyError, OutputError, check_output_dir, output_lock

ROOT = Path(__file__).resolve().parents[1]
MODEL = ["--model", "hpx_s4=random", "--device", "cpu"]
COMMANDS = {
    # the module whose load_model the command's job calls (the jobs load through hpx_analysis.jobs)
    "coverage": (weights_module, ["coverage", *MODEL]),
    "truncation": (weights_module, ["truncation", *MODEL, "--num-images", "1", "--size", "64", "--rel-sizes", "1"]),
    "kernels": (weights_module, ["kernels", *MODEL]),
    "erf": (erf_job_module, ["erf", *MODEL, "--num-images", "1", "--size", "64"]),
}


def invoke(args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, " ".join(result.output.split())


def no_work(monkeypatch, module):
    """Make loading a model (the start of the work) fail the test."""

    def forbidden(*a, **k):
        raise AssertionError("the work started before the output folder was checked")

    monkeypatch.setattr(module, "load_model", forbidden)


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", ["file", "under_file"])
def test_unusable_out_fails_before_the_work(tmp_path, monkeypatch, command, case):
    module, args = COMMANDS[command]
    no_work(monkeypatch, module)
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    out = blocker if case == "file" else blocker / "sub" / "dir"
    result, text = invoke([*args, "--out", out])
    assert result.exit_code == 2, text
    assert "output folder" in text and "Traceback" not in text
    assert blocker.read_text() == "keep me"


def test_check_output_dir_cases(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is an existing file"):
        check_output_dir(tmp_path / "f")
    with pytest.raises(OutputError, match="is a file"):
        check_output_dir(tmp_path / "f" / "a")
    made = check_output_dir(tmp_path / "a" / "b")
    assert made.is_dir() and list(made.iterdir()) == []  # the probe file is gone


def test_read_only_parent(tmp_path):
    if os.geteuid() == 0:  # root writes through permission bits: use a read-only file system
        parent = Path("/sys/hpx-analysis-test")
        if os.access("/sys", os.W_OK) and not Path("/sys").is_mount():
            pytest.skip("no read-only location to test with")
    else:
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o555)
    with pytest.raises(OutputError, match="cannot create output folder"):
        check_output_dir(parent / "out")
    result, text = invoke(["coverage", *MODEL, "--out", parent / "out"])
    assert result.exit_code == 2 and "cannot create output folder" in text, text


def _cli_in_subprocess(args, ulimit_kb: int, cwd: Path) -> subprocess.CompletedProcess:
    cmd = " ".join([f"ulimit -f {ulimit_kb};", sys.executable, "-m", "hpx_analysis.cli.main", *map(str, args)])
    env = {**os.environ, "HPX_ANALYSIS_HEAP_REUSE": "0"}
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.slow
def test_full_disk_fails_before_the_work_without_leftovers(tmp_path):
    out = tmp_path / "out"
    started = time.perf_counter()
    proc = _cli_in_subprocess(["coverage", *MODEL, "--out", out], ulimit_kb=16, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "cannot write into output folder" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert list(out.iterdir()) == []  # no probe, no lock, no temporary file
    assert time.perf_counter() - started < 120


def test_a_write_error_after_the_work_is_one_line(tmp_path, monkeypatch):
    def disk_full(self, out_dir):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(out_dir) / "coverage.csv"))

    monkeypatch.setattr(CoverageResult, "save", disk_full)
    out = tmp_path / "out"
    result, text = invoke(["coverage", *MODEL, "--out", out])
    assert result.exit_code == 2, text
    assert "No space left on device" in text and "coverage.csv" in text and "Traceback" not in text
    assert list(out.iterdir()) == []  # the lock is released


# ----------------------------------------------------------------------------- the lock
def test_lock_is_exclusive_and_released(tmp_path):
    with output_lock(tmp_path) as folder:
        assert (folder / LOCK_NAME).is_file()
        with pytest.raises(OutputBusyError, match=f"pid {os.getpid()}"):
            with output_lock(tmp_path):
                raise AssertionError("the lock was taken twice")
    assert not (tmp_path / LOCK_NAME).exists()
    with pytest.raises(RuntimeError):
        with output_lock(tmp_path):
            raise RuntimeError
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_stale_lock_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import json
    import socket

    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 0}))
    with output_lock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_second_process_into_the_same_out_is_refused(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from hpx_analysis.io.output import check_output_dir, output_lock
                check_output_dir({str(out)!r})
                with output_lock({str(out)!r}, command="hpx-analyze erf --size 128"):
                    print("held", flush=True)
                    sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result, text = invoke(["coverage", *MODEL, "--out", out])
        assert result.exit_code == 2, text
        assert f"pid {holder.pid}" in text and "in use by another hpx-analyze run" in text
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written beside it
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not (out / LOCK_NAME).exists()
    result, text = invoke(["coverage", *MODEL, "--out", out])  # free again
    assert result.exit_code == 0, text
