"""File-level helpers of the store: atomic, checksummed writes and verified reads.

A file is written under a temporary name in its final folder, flushed and fsynced, then renamed
over the final name with :func:`os.replace` (atomic on POSIX), and the folder is fsynced so the
rename survives a power cut.  Readers therefore see either no file or a complete one; a crash
leaves at most a ``<name>.tmp-<pid>-<random>`` file, which every reader ignores.

A checksummed write (``atomic_write(..., checksum=True)``, what the store uses for every result
and run record) also writes ``.<name>.sha256`` beside the file: ``sha256 <hex> <size>``, over the
file's bytes.  The order is: data into its temporary file (fsynced), the checksum file put in
place atomically, then the data renamed.  So a kill between any two steps leaves either the old
pair (or nothing), or the new checksum beside the old data (or beside no data), which
:func:`read_verified` reports as damage (or as missing): a mismatched pair is never read as good.
A reader that reads the data first and the checksum second therefore never mistakes a finished
write for damage.

A file with no checksum file (written before checksums existed) is trusted if it parses.

Reads turn pyarrow's errors and checksum mismatches into a one-line
:class:`~rnnlab.errors.DamagedFileError` that names the file.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DamagedFileError

TMP_MARK = ".tmp-"
"""What a temporary file's name has after the final name: ``k.parquet.tmp-<pid>-<hex>``."""

SUM_SUFFIX = ".sha256"

_MAGIC = b"PAR1"


def is_tmp(name: str) -> bool:
    """Whether ``name`` is a temporary file left by a write (finished, running or crashed)."""
    return TMP_MARK in name


def sum_path(path: Path) -> Path:
    """Where the checksum of ``path`` is kept: ``.<name>.sha256`` beside it (hidden, so that
    readers of the folder, pyarrow's datasets included, skip it)."""
    return path.with_name(f".{path.name}{SUM_SUFFIX}")


def atomic_write(path: Path, write: Callable[[BinaryIO], None], checksum: bool = False) -> None:
    """Make ``path`` hold what ``write(f)`` writes into ``f``, or leave it as it was; with
    ``checksum``, its checksum file is put in place just before the data (module docstring).

    The temporary file is removed if anything fails before the rename (the error is re-raised);
    only a killed process leaves one behind.
    """
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if checksum:
            digest_hex, size = digest(tmp)
            line = f"sha256 {digest_hex} {size}\n".encode("ascii")
            atomic_write(sum_path(path), lambda f: f.write(line))
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


def digest(path: Path) -> tuple[str, int]:
    """(sha256 hex, size in bytes) of the file ``path``."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _expected(path: Path) -> tuple[str, int] | None:
    """(sha256 hex, size) from the checksum file of ``path``; None if it has none."""
    try:
        text = sum_path(path).read_bytes()
    except FileNotFoundError:
        return None
    parts = text.decode("ascii", errors="replace").split()
    if len(parts) != 3 or parts[0] != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", parts[1]) \
            or not parts[2].isdigit():
        raise DamagedFileError(path, f"its checksum file {sum_path(path).name} is unreadable")
    return parts[1], int(parts[2])


def read_verified(path: Path) -> tuple[bytes, bool]:
    """The bytes of ``path`` and whether a checksum vouched for them (False: the file has no
    checksum file, see the module docstring).  FileNotFoundError if it is missing;
    DamagedFileError if it does not match its checksum."""
    with open(path, "rb") as f:          # the data first, then its checksum (module docstring)
        data = f.read()
    expected = _expected(path)
    if expected is None:
        return data, False
    want, size = expected
    if len(data) != size:
        raise DamagedFileError(path, f"{len(data)} bytes where its checksum says {size}: "
                                     f"does not match its checksum")
    if hashlib.sha256(data).hexdigest() != want:
        raise DamagedFileError(path, "does not match its checksum")
    return data, True


def looks_complete(path: Path) -> bool:
    """Cheap check (two small reads) that ``path`` is a whole Parquet file: it starts and ends
    with the Parquet magic and its footer length fits in the file.  Only a first look: a file
    damaged in the middle may pass (see :func:`damage`)."""
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


def damage(path: Path) -> str | None:
    """Why the Parquet file ``path`` cannot be trusted, or None if it can: it matches its
    checksum, or (no checksum file) its footer parses.  FileNotFoundError if it is missing."""
    try:
        _, verified = read_verified(path)
    except DamagedFileError as e:
        return e.reason
    if verified:
        return None
    if not looks_complete(path):
        return "truncated: no Parquet footer"
    try:
        with pq.ParquetFile(str(path)):
            return None
    except (pa.ArrowException, OSError) as e:
        return _reason(e)


def read_parquet(path: Path) -> pa.Table:
    """The table in ``path``, verified; DamagedFileError naming the file if it does not match
    its checksum or cannot be parsed; FileNotFoundError if it is missing."""
    data, _ = read_verified(path)
    try:
        with pq.ParquetFile(pa.BufferReader(data)) as pf:
            return pf.read()
    except (pa.ArrowException, OSError) as e:
        raise DamagedFileError(path, _reason(e)) from None


def read_schema(path: Path) -> pa.Schema:
    """The schema (with metadata) of ``path``, verified like :func:`read_parquet`."""
    data, _ = read_verified(path)
    try:
        with pq.ParquetFile(pa.BufferReader(data)) as pf:
            return pf.schema_arrow
    except (pa.ArrowException, OSError) as e:
        raise DamagedFileError(path, _reason(e)) from None


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
