"""An exclusive lock shared by processes, on a lock file, with :func:`fcntl.flock`.

The kernel drops a ``flock`` lock when its holder exits, even when killed, so a crashed process
never blocks anyone.  The lock belongs to the open file, so two ``with`` blocks in one process
(two threads, say) exclude each other too.

The holder writes ``<pid> <host>`` into the file and deletes it when it lets go (while still
holding the lock), so a finished or failed command leaves no lock file.  Deleting a lock file is
safe because of one rule: a process that obtains the lock checks that the file it locked is
still the one under that name, and if not (its last holder deleted it meanwhile), starts again
on the new file.  A process killed while holding a lock leaves its file behind; such a file is
*stale* when the process it names is gone from this host and nobody holds its lock, and
:func:`clear_stale` deletes it, under the same rule.  A lock that a live process holds is never
touched.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import StoreError

__all__ = ["clear_stale", "file_lock"]

SUFFIX = ".lock"


@contextmanager
def file_lock(path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block.

    Blocks until the lock is free; with ``timeout`` (seconds), raises StoreError once it has
    waited that long.  The holder writes ``<pid> <host>`` into the file, for the error message
    and for :func:`clear_stale`, and deletes the file when the block ends.
    """
    deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise StoreError(f"lock {path}: cannot open it ({e.strerror or e})") from None
        try:
            _acquire(fd, path, deadline, timeout)
        except BaseException:
            os.close(fd)
            raise
        if _is_current(fd, path):
            break
        os.close(fd)                     # deleted by its last holder meanwhile: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        try:
            os.unlink(path)              # while still holding it (see the module docstring)
        except OSError:
            pass
        os.close(fd)                     # releases the lock


def clear_stale(folder: Path) -> list[str]:
    """Delete the lock files in ``folder`` left by processes of this host that are gone (and
    whose lock nobody holds); return their paths."""
    try:
        entries = [e for e in os.scandir(folder) if e.name.endswith(SUFFIX) and e.is_file()]
    except FileNotFoundError:
        return []
    host, removed = socket.gethostname(), []
    for e in entries:
        owner = _owner(Path(e.path))
        if owner is None or owner[1] != host or _alive(owner[0]):
            continue
        try:
            fd = os.open(e.path, os.O_RDWR)
        except OSError:                  # gone meanwhile, or not ours to open
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:          # somebody holds it: not stale
            os.close(fd)
            continue
        try:
            if _is_current(fd, Path(e.path)):
                os.unlink(e.path)
                removed.append(e.path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return sorted(removed)


def _acquire(fd: int, path: Path, deadline: float | None, timeout: float | None) -> None:
    if deadline is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreError(f"lock {path}: still held by {_holder(fd)} after waiting "
                                 f"{timeout:g} s") from None
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.1)


def _is_current(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is still the file named ``path``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _owner(path: Path) -> tuple[int, str] | None:
    """(pid, host) written in a lock file, or None if it holds no such line."""
    try:
        text = path.read_bytes()[:200].decode(errors="replace").split()
    except OSError:
        return None
    if len(text) < 2 or not text[0].isdigit():
        return None
    return int(text[0]), text[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):    # no such process (or no such pid at all)
        return False
    except PermissionError:                        # another user's process
        return True
    return True


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").split()
    except OSError:
        text = []
    return f"process {text[0]} on {text[1]}" if len(text) >= 2 else "another process"
