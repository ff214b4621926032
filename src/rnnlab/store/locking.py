"""An exclusive lock shared by processes, on a lock file, with :func:`fcntl.flock`.

The kernel drops a ``flock`` lock when its holder exits, even when killed, so a crashed process
never leaves a stale lock.  The lock belongs to the open file, so two ``with`` blocks in one
process (two threads, say) exclude each other too.  The lock file itself is never deleted:
deleting it would let two processes lock two different files of the same name.
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

__all__ = ["file_lock"]


@contextmanager
def file_lock(path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block.

    Blocks until the lock is free; with ``timeout`` (seconds), raises StoreError once it has
    waited that long.  The holder writes ``<pid> <host>`` into the file, for the error message.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise StoreError(f"lock {path}: cannot open it ({e.strerror or e})") from None
    try:
        _acquire(fd, path, timeout)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, timeout: float | None) -> None:
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + max(timeout, 0.0)
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


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").split()
    except OSError:
        text = []
    return f"process {text[0]} on {text[1]}" if len(text) >= 2 else "another process"
