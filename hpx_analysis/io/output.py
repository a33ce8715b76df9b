"""Output folders: checked before the work starts, and locked while a run writes into them.

:func:`check_output_dir` creates the folder if needed and writes (then removes) a small
probe file, so a path that names a file, lies under a file, sits in a read-only folder or on
a full disk fails at once, not after hours of computation. :func:`output_lock` holds a lock
file (``.hpx-analyze.lock``, with the owner's pid, host and command) for as long as a run
writes into the folder: a second run into the same folder is refused with a message naming
the owner; a lock left by a process that no longer runs (on this host) is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["OutputError", "OutputBusyError", "LOCK_NAME", "check_output_dir", "output_lock"]

LOCK_NAME = ".hpx-analyze.lock"
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
