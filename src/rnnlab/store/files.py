"""File-level helpers of the store: atomic writes and careful Parquet reads.

A file is written under a temporary name in its final folder, flushed and fsynced, then renamed
over the final name with :func:`os.replace` (atomic on POSIX), and the folder is fsynced so the
rename survives a power cut.  Readers therefore see either no file or a complete one; a crash
leaves at most a ``<name>.tmp-<pid>-<random>`` file, which every reader ignores.

Parquet reads turn pyarrow's errors into a one-line :class:`~rnnlab.errors.StoreError` that
names the file.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError

TMP_MARK = ".tmp-"
"""What a temporary file's name has after the final name: ``k.parquet.tmp-<pid>-<hex>``."""

_MAGIC = b"PAR1"


def is_tmp(name: str) -> bool:
    """Whether ``name`` is a temporary file left by a write (finished, running or crashed)."""
    return TMP_MARK in name


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Make ``path`` hold what ``write(f)`` writes into ``f``, or leave it as it was.

    The temporary file is removed if anything fails before the rename (the error is re-raised);
    only a killed process leaves one behind.
    """
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:  # not created, or already gone; the original error is what matters
            pass
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (new names, renames) to disk, where the file system allows it."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems cannot fsync a folder; the rename is still atomic
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def looks_complete(path: Path) -> bool:
    """Cheap check (two small reads) that ``path`` is a whole Parquet file.

    True when it starts and ends with the Parquet magic and its footer length fits in the file.
    A truncated file fails this; a file damaged in the middle may pass (see :func:`footer_error`).
    """
    try:
        size = os.path.getsize(path)
        if size < 12:
            return False
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(-8, os.SEEK_END)
            tail = f.read(8)
    except FileNotFoundError:
        return False
    footer_len = int.from_bytes(tail[:4], "little")
    return head == _MAGIC and tail[4:] == _MAGIC and footer_len + 12 <= size


def footer_error(path: Path) -> str | None:
    """Why pyarrow cannot read the footer of ``path``, or None if it can (or the file is gone)."""
    try:
        with pq.ParquetFile(str(path)):
            return None
    except FileNotFoundError:
        return None
    except (pa.ArrowException, OSError) as e:
        return _reason(e)


def read_parquet(path: Path) -> pa.Table:
    """The table in ``path``; StoreError naming the file if it is corrupted or truncated."""
    try:
        with pq.ParquetFile(str(path)) as pf:
            return pf.read()
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as e:
        raise StoreError(corrupted_message([path], _reason(e))) from None


def read_schema(path: Path) -> pa.Schema:
    """The schema (with metadata) of ``path``; StoreError naming the file if it is unreadable."""
    try:
        with pq.ParquetFile(str(path)) as pf:
            return pf.schema_arrow
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as e:
        raise StoreError(corrupted_message([path], _reason(e))) from None


def corrupted_message(paths: list[Path], reason: str | None = None) -> str:
    """One line naming the damaged file(s), saying what to do."""
    names = ", ".join(str(p) for p in paths)
    what = "results file" if len(paths) == 1 else "results files"
    verb = "is" if len(paths) == 1 else "are"
    detail = f" ({reason})" if reason else ""
    return f"{what} {names} {verb} corrupted or truncated{detail}; delete to recompute"


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error's message."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


def _reason(error: BaseException) -> str:
    # pyarrow repeats the path ("Could not open Parquet input source '<path>': ..."); drop it.
    return re.sub(r"^Could not open Parquet input source '.*?': ", "", first_line(error))
