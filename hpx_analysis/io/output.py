"""Output folders: checked before the work starts, and locked while a run writes into them.

:func:`check_output_dir` creates the folder if needed and writes (then removes) a small
probe file, so a path that names a file, lies under a file, sits in a read-only folder or on
a full disk fails at once, not after hours of computation. :func:`output_lock` holds a lock
file (``.hpx-analyze.lock``, with the owner's pid, host and command) for as long as a run
writes into the folder: a second run into the same folder is refused with a message naming
the owner; a lock left by a process that no longer runs (on this host) is taken over.

:func:`atomic_file` writes one file so that it is either the old one or the complete new
one (temporary file, fsync, rename). :func:`staged_output` makes a whole run's set of files
replace the previous run's at once: the run writes into a staging folder inside the output
folder, and only a complete run is moved in, its completion marker last; a folder without
the marker holds no finished run, and a move cut short is finished by the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "OutputError",
    "OutputBusyError",
    "LOCK_NAME",
    "check_output_dir",
    "output_lock",
    "atomic_file",
    "staged_output",
]

LOCK_NAME = ".hpx-analyze.lock"
STAGING_PREFIX = ".hpx-staging."  # a run's files while it runs
COMMIT_NAME = ".hpx-commit"  # a complete run's files while they move into the folder
MANIFEST_NAME = ".hpx-manifest.json"  # the names of a complete run's files
_PROBE_BYTES = 64 * 1024


class OutputError(Exception):
    """The output folder cannot be created or written; the message is meant for the user."""


class OutputBusyError(OutputError):
    """Another run holds the output folder's lock."""


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def check_output_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (with its parents) if needed and check that files can be written into it.

    Args:
        path: the output folder.

    Returns:
        Path: the folder (``~`` expanded).

    Raises:
        OutputError: ``path`` is a file, lies under a file, cannot be created or is not
            writable (read-only, no space, file size limit).
    """
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output folder {folder} is an existing file, not a folder")
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor != folder and not ancestor.is_dir():
        raise OutputError(f"cannot create output folder {folder}: {ancestor} is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create output folder {folder}: {_reason(err)}") from None
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".hpx-write-check.", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"\0" * _PROBE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        raise OutputError(f"cannot write into output folder {folder}: {_reason(err)}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _read_owner(lock: Path) -> dict | None:
    try:
        owner = json.loads(lock.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _busy(folder: Path, lock: Path, owner: dict | None) -> OutputBusyError:
    if not owner:
        who = f"another run (its lock file {lock} is unreadable)"
    else:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
        who = f"another hpx-analyze run (pid {owner.get('pid')} on {owner.get('host')}, started {started})"
    return OutputBusyError(
        f"output folder {folder} is in use by {who}; wait for it to finish or choose another output "
        f"folder (if no such run is alive, delete {lock})"
    )


@contextmanager
def output_lock(path: str | os.PathLike, command: str = "") -> Iterator[Path]:
    """Hold ``<path>/.hpx-analyze.lock`` while the block runs.

    A lock whose owner ran on this host and is gone (killed, crashed) is stale and taken over.

    Args:
        path: the output folder (it must exist: see :func:`check_output_dir`).
        command: the command line recorded in the lock file, for the message a second run gets.

    Yields:
        Path: the folder.

    Raises:
        OutputBusyError: a live process holds the lock.
        OutputError: the lock file cannot be created or written.
    """
    folder = Path(path).expanduser()
    lock = folder / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": command}
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(lock)
            stale = (
                attempt == 0
                and owner
                and owner.get("host") == me["host"]
                and isinstance(owner.get("pid"), int)
                and owner["pid"] != me["pid"]
                and not _alive(owner["pid"])
            )
            if owner == {} and attempt == 0:  # released between our two looks
                continue
            if not stale:
                raise _busy(folder, lock, owner) from None
            lock.unlink(missing_ok=True)
            continue
        except OSError as err:
            raise OutputError(f"cannot create the lock file {lock}: {_reason(err)}") from None
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(me))
        except OSError as err:
            lock.unlink(missing_ok=True)
            raise OutputError(f"cannot write the lock file {lock}: {_reason(err)}") from None
        break
    else:
        raise _busy(folder, lock, _read_owner(lock))
    try:
        yield folder
    finally:
        if _read_owner(lock) == me:
            lock.unlink(missing_ok=True)


def _sync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        # some file systems refuse fsync on a folder (EINVAL); the renames are done either way,
        # only their durability across a power cut is then the file system's own
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Write ``path`` all at once: the block writes the yielded temporary path (same folder),
    which is then flushed to disk and renamed onto ``path``; if the block fails, the
    temporary file is removed and ``path`` keeps its previous content.

    Args:
        path: the file to write.

    Returns:
        Iterator[Path]: the temporary path to write (it ends in ``path``'s suffix).
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(target.parent)


def atomic_write(path: str | os.PathLike, write: Callable) -> Path:
    """Write ``path`` all at once through ``write(binary file object)`` (:func:`atomic_file`);
    its folder is created if needed.

    Args:
        path: the file to write.
        write: called with the temporary file opened for binary writing.

    Returns:
        Path: ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        write(fh)
    return path


def _finish_commit(out: Path, replaces: Callable[[str], bool], marker: str) -> None:
    """Move a complete run's files from ``out/.hpx-commit`` into ``out``: first the old
    marker goes, then the previous run's other files (``replaces(name)``) that the new run
    does not write, then the new files, the marker last. Safe to repeat after a kill."""
    commit = out / COMMIT_NAME
    if not commit.is_dir():
        return
    names = json.loads((commit / MANIFEST_NAME).read_text())
    waiting = [name for name in names if (commit / name).exists()]
    if waiting:
        (out / marker).unlink(missing_ok=True)
        for old in out.iterdir():
            if old.is_file() and replaces(old.name) and old.name not in names:
                old.unlink()
        for name in sorted(waiting, key=lambda n: n == marker):
            os.replace(commit / name, out / name)
        _sync_folder(out)
    shutil.rmtree(commit)


@contextmanager
def staged_output(out: str | os.PathLike, replaces: Callable[[str], bool], marker: str) -> Iterator[Path]:
    """A run whose files replace the previous run's in ``out`` only once they are complete.

    The caller holds ``out``'s lock (:func:`output_lock`). Staging folders of killed runs are
    removed and a move cut short is finished first. The block writes its files into the
    yielded staging folder (inside ``out``); when it ends without error they move into
    ``out``, replacing the previous run's files, with ``marker`` last. When it fails
    (including Ctrl-C) the staging folder is removed and ``out`` is left as it was.

    Args:
        out: the output folder (it exists).
        replaces: whether a file name in ``out`` belongs to a run of this kind (removed
            when a new run moves in, so that no folder mixes two runs).
        marker: the file a complete run writes last (e.g. its record).

    Returns:
        Iterator[Path]: the staging folder to write into.
    """
    folder = Path(out)
    _finish_commit(folder, replaces, marker)
    for entry in folder.iterdir():
        if entry.is_dir() and entry.name.startswith(STAGING_PREFIX):
            shutil.rmtree(entry, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    try:
        yield staging
        if not (staging / marker).is_file():
            raise OutputError(f"the run wrote no {marker}; {folder} keeps the previous files")
        names = sorted(p.name for p in staging.iterdir() if p.is_file())
        with atomic_file(staging / MANIFEST_NAME) as tmp:
            tmp.write_text(json.dumps(names))
        os.replace(staging, folder / COMMIT_NAME)  # complete: from here on a later run finishes the move
        _sync_folder(folder)
        _finish_commit(folder, replaces, marker)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
