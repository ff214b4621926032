"""The results store: immutable Parquet files in a folder, queried with DuckDB.

Layout under the root folder::

    tables/<table>/<key>.parquet   one result (a DataFrame) per file, replaced atomically
    tables/<table>/.<key>.parquet.sha256   its checksum (see :mod:`rnnlab.store.files`)
    runs/<run_id>.json             one record per run (and its ``.<run_id>.json.sha256``)
    locks/<name>.lock              lock files for :meth:`Store.lock`, deleted when released
    quarantine/                    damaged files moved aside by :meth:`Store.quarantine`

Why files and not a database file: a DuckDB database file has a single writer process, while
here any number of processes (or machines on a shared disk) write different files at once with
no lock, and a crash can never leave a half-written file under a final name.  DuckDB is only
the query engine, over an in-memory connection opened per query and allowed to read nothing
but the verified tables handed to it; pandas reads the same files.

Every read checks the file against its checksum.  Readers (:meth:`Store.read`, :meth:`Store.query`,
:meth:`Store.run`) raise a one-line :class:`~rnnlab.errors.DamagedFileError` naming a damaged
file; the runner, which can recompute it, calls :meth:`Store.reuse` instead, which moves it to
``quarantine/`` with a one-line :class:`~rnnlab.errors.StoreWarning` and answers "not stored".
"""
from __future__ import annotations

import errno
import json
import os
import re
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DamagedFileError, StoreError, StoreWarning
from .files import (atomic_write, damage, first_line, is_tmp, read_parquet, read_schema,
                    sum_path)
from .hashing import canonical_json
from .locking import clear_stale, file_lock
from .runs import read_record, record_paths, records_frame, write_record

__all__ = ["Store", "open_store", "load", "view_name", "DEFAULT_ROOT"]

DEFAULT_ROOT = "./results/store"
"""Where :func:`open_store` looks when neither an argument nor ``RNNLAB_RESULTS`` says."""

META_KEY = b"rnnlab"
"""The Parquet schema-metadata key holding the ``meta`` dict of :meth:`Store.write`, as JSON."""

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}")
_SUFFIX = ".parquet"
_RUNS_VIEW = "runs"

READ_STATEMENTS = "SELECT, WITH, EXPLAIN, DESCRIBE, SHOW"
"""What :meth:`Store.query` runs (DuckDB parses DESCRIBE, SHOW, SUMMARIZE, FROM ..., VALUES
and WITH ... SELECT as SELECT statements); anything else is refused."""


def view_name(table: str) -> str:
    """The SQL name of a table in :meth:`Store.query`: ``-`` and ``.`` become ``_``."""
    return table.replace("-", "_").replace(".", "_")


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.startswith("."):
        raise StoreError(f"{kind} name {name!r}: use 1 to 200 letters, digits, '_', '.' or '-', "
                         f"not starting with '.'")
    return name


class Store:
    """A results folder.  See the module docstring for the layout.

    ``Store(root)`` creates the folder if needed and checks it is writable.
    ``Store(root, create=False)`` opens an existing folder, for reading: it need not be writable
    (writes then fail with StoreError).  A Store holds only its path, so it pickles cheaply to
    worker processes; every method works on the files directly.
    """

    def __init__(self, root: str | os.PathLike, create: bool = True):
        self.root = Path(os.fspath(root)).expanduser().absolute()
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"results folder: {self.root} is a file, not a folder")
        if not self.root.exists():
            if not create:
                raise StoreError(f"results folder: {self.root} does not exist")
            self._mkdir(self.root)
        if create:
            for sub in (self._tables_dir, self._runs_dir, self._locks_dir):
                self._mkdir(sub)
            self._check_writable()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ----------------------------------------------------------------- layout and checks
    @property
    def _tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def _runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def _locks_dir(self) -> Path:
        return self.root / "locks"

    @property
    def _quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    def path(self, table: str, key: str) -> Path:
        """Where the result ``table``/``key`` is (or would be) stored."""
        _check_name("table", table)
        _check_name("key", key)
        return self._tables_dir / table / f"{key}{_SUFFIX}"

    def _mkdir(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            for path in (folder, *folder.parents):  # a file in the way?
                if path.exists() and not path.is_dir():
                    raise StoreError(f"results folder: {path} is a file, not a folder") from None
            raise self._os_error(folder, e) from None

    def _check_writable(self) -> None:
        folders = (self.root, self._tables_dir, self._runs_dir, self._locks_dir)
        if not all(os.access(f, os.W_OK | os.X_OK) for f in folders):
            raise StoreError(f"results folder: {self.root} is not writable")
        try:  # os.access can be wrong (ACLs, network file systems): try for real, once
            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=self._tables_dir)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise self._os_error(self._tables_dir, e) from None

    def _os_error(self, path: Path, e: OSError) -> StoreError:
        """A one-line StoreError for an OSError met while writing ``path``."""
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return StoreError(f"results folder: {self.root} is not writable")
        return StoreError(f"results folder: cannot write {path}: {e.strerror or e}")

    def _files(self, table: str) -> list[Path]:
        """The complete-named Parquet files of ``table``, sorted by key (no temporaries)."""
        try:
            entries = list(os.scandir(self._tables_dir / table))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(Path(e.path) for e in entries
                      if e.name.endswith(_SUFFIX) and not is_tmp(e.name) and e.is_file())

    # ----------------------------------------------------------------------- tables
    def has(self, table: str, key: str) -> bool:
        """Whether ``table``/``key`` exists and is whole: it matches its checksum (a damaged file
        counts as absent, so a ``has``-guarded computation redoes it and replaces the file)."""
        try:
            return damage(self.path(table, key)) is None
        except FileNotFoundError:
            return False

    def intact(self, table: str, key: str) -> bool:
        """Like :meth:`has`, but a damaged file is also moved to quarantine (one warning)."""
        path = self.path(table, key)
        try:
            reason = damage(path)
        except FileNotFoundError:
            return False
        if reason is not None:
            self.quarantine(path, reason)
        return reason is None

    def reuse(self, table: str, key: str) -> pd.DataFrame | None:
        """The stored result ``table``/``key`` if it is there and whole, else None: the caller
        computes it again.  A damaged file is moved to quarantine with a one-line
        :class:`~rnnlab.errors.StoreWarning` naming it, never returned and never an error."""
        path = self.path(table, key)
        try:
            return read_parquet(path).to_pandas()
        except FileNotFoundError:
            return None
        except DamagedFileError as e:
            self.quarantine(path, e.reason)
            return None

    def quarantine(self, path: str | os.PathLike, reason: str | None = None) -> Path | None:
        """Move the damaged file ``path`` of this store (and its checksum file) into
        ``quarantine/``, named by the time and its place in the store, so that nothing is lost
        and the next run recomputes it; warn in one line.  Returns where it went (None if it
        was gone already, e.g. moved by another process)."""
        path = Path(path)
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            raise StoreError(f"quarantine: {path} is not in the store {self.root}") from None
        self._mkdir(self._quarantine_dir)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        dest = self._quarantine_dir / f"{stamp}-{os.getpid()}-{'__'.join(rel.parts)}"
        n = 1
        while dest.exists():
            n += 1
            dest = dest.with_name(f"{stamp}-{os.getpid()}-{n}-{'__'.join(rel.parts)}")
        try:
            os.rename(path, dest)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._os_error(dest, e) from None
        try:
            os.rename(sum_path(path), dest.with_name(dest.name + ".sha256"))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise self._os_error(dest, e) from None
        why = f" ({reason})" if reason else ""
        warnings.warn(StoreWarning(f"results file {path} is damaged{why}; moved it to {dest}; "
                                   f"recomputing it"), stacklevel=2)
        return dest

    def write(self, table: str, key: str, df: pd.DataFrame, meta: dict | None = None) -> Path:
        """Store ``df`` as ``table``/``key``, atomically replacing any previous version.

        ``meta`` (JSON-able; NumPy values are fine) goes into the file's schema metadata, read
        back by :meth:`meta`.  The index is not stored, except named index levels, which become
        columns (``df.reset_index()`` them yourself to keep an unnamed one).
        """
        path = self.path(table, key)
        self._check_table_name_free(table)
        arrow = _to_arrow(df, meta)
        try:
            self._mkdir(path.parent)
            atomic_write(path, lambda f: pq.write_table(arrow, f), checksum=True)
        except OSError as e:
            raise self._os_error(path, e) from None
        return path

    def _check_table_name_free(self, table: str) -> None:
        view = view_name(table)
        if view == _RUNS_VIEW:
            raise StoreError(f"table name {table!r}: '{_RUNS_VIEW}' is the SQL view of the run "
                             f"records; choose another name")
        for other in self._table_dirs():
            if other != table and view_name(other) == view:
                raise StoreError(f"table name {table!r}: would share the SQL name {view!r} "
                                 f"with the existing table {other!r}")

    def read(self, table: str, key: str | None = None) -> pd.DataFrame:
        """One result, or (``key=None``) all of ``table``'s files concatenated in key order.

        Columns are matched by name; a column missing from a file is null in its rows, and
        differing types are widened (int and float -> float).  A table with no files gives an
        empty DataFrame.  A damaged file raises StoreError naming it.
        """
        _check_name("table", table)
        if key is not None:
            path = self.path(table, key)
            try:
                return read_parquet(path).to_pandas()
            except FileNotFoundError:
                raise StoreError(f"no result {table}/{key} in {self.root}") from None
        combined = self._arrow(table)
        return pd.DataFrame() if combined is None else combined.to_pandas()

    def _arrow(self, table: str) -> pa.Table | None:
        """All the files of ``table``, verified, as one Arrow table (None if it has none)."""
        parts = []
        for path in self._files(table):
            try:
                parts.append(read_parquet(path))
            except FileNotFoundError:  # deleted since listed
                continue
        if len(parts) <= 1:
            return parts[0] if parts else None
        try:
            return pa.concat_tables(parts, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
            raise StoreError(f"table {table}: its files have clashing column types "
                             f"({first_line(e)})") from None

    def meta(self, table: str, key: str) -> dict:
        """The ``meta`` dict given to :meth:`write` (``{}`` if none)."""
        path = self.path(table, key)
        try:
            metadata = read_schema(path).metadata or {}
        except FileNotFoundError:
            raise StoreError(f"no result {table}/{key} in {self.root}") from None
        raw = metadata.get(META_KEY)
        if raw is None:
            return {}
        try:
            return json.loads(raw)
        except ValueError as e:
            raise DamagedFileError(path, f"bad metadata: {first_line(e)}") from None

    def keys(self, table: str) -> list[str]:
        """The keys of ``table``, sorted; ``[]`` if it has none."""
        _check_name("table", table)
        return [p.name[: -len(_SUFFIX)] for p in self._files(table)]

    def tables(self) -> list[str]:
        """The tables holding at least one file, sorted."""
        return [t for t in self._table_dirs() if self._files(t)]

    def _table_dirs(self) -> list[str]:
        try:
            entries = list(os.scandir(self._tables_dir))
        except FileNotFoundError:
            return []
        return sorted(e.name for e in entries
                      if e.is_dir() and _NAME.fullmatch(e.name) and not e.name.startswith("."))

    # ------------------------------------------------------------------------- SQL
    def query(self, sql: str) -> pd.DataFrame:
        """Run one read-only DuckDB statement over the store and return the result.

        Each table is a view named :func:`view_name` (``model.params`` -> ``model_params``), its
        files verified and combined by column name (as :meth:`read`); the view ``runs`` has one
        row per run record (as :meth:`runs`).  Tables the SQL does not mention are listed (by
        ``SHOW TABLES``) but empty, so a damaged file only breaks queries on its own table.

        Only reads run (:data:`READ_STATEMENTS`): COPY, ATTACH, INSTALL, CREATE, SET, ... are
        refused before anything runs, and DuckDB itself may not touch a file (external access
        off, configuration locked): the query sees the store's tables and nothing else.  Errors,
        bad SQL included, raise a one-line StoreError.
        """
        con = duckdb.connect(":memory:", config={"enable_external_access": False,
                                                 "autoinstall_known_extensions": False,
                                                 "autoload_known_extensions": False,
                                                 "lock_configuration": True})
        try:
            _check_read_only(con, sql)
            mentioned = _identifiers(sql)
            for table in self.tables():
                view = view_name(table)
                if view.lower() in mentioned:
                    data = self._arrow(table)
                else:                       # listed, not read: no rows, its first file's columns
                    data = _placeholder(self._files(table))
                if data is not None:
                    con.register(view, data)
            if _RUNS_VIEW in mentioned:
                con.register(_RUNS_VIEW, self.runs())
            try:
                return con.execute(sql).df()
            except duckdb.Error as e:
                raise StoreError(f"query failed: {first_line(e)}") from None
        finally:
            con.close()

    # ------------------------------------------------------------------------ runs
    def record_run(self, run_id: str, record: dict[str, Any]) -> None:
        """Write (or replace) the record of run ``run_id`` atomically."""
        path = self._runs_dir / f"{_check_name('run id', run_id)}.json"
        try:
            self._mkdir(path.parent)
            write_record(path, record)
        except OSError as e:
            raise self._os_error(path, e) from None

    def run(self, run_id: str) -> dict | None:
        """The record of run ``run_id``, or None if there is none."""
        return read_record(self._runs_dir / f"{_check_name('run id', run_id)}.json")

    def runs(self) -> pd.DataFrame:
        """One row per run record, sorted by run id; ``config`` as a canonical JSON string."""
        return records_frame(self._runs_dir)

    # ----------------------------------------------------------------------- locks
    @contextmanager
    def lock(self, name: str, timeout: float | None = None) -> Iterator[None]:
        """Hold the store-wide exclusive lock ``name`` (across processes) for a ``with`` block.

        Waits for it; with ``timeout`` seconds, raises StoreError when it is still taken.
        """
        path = self._locks_dir / f"{_check_name('lock', name)}.lock"
        self._mkdir(path.parent)
        clear_stale(self._locks_dir)
        with file_lock(path, timeout):
            yield

    # ---------------------------------------------------------------- maintenance
    def verify(self) -> list[str]:
        """Paths of damaged files (not matching their checksum; without one, an unreadable
        Parquet footer or a run record that is not JSON), sorted.

        Temporary files left by interrupted writes are not checked; see :meth:`clean_tmp`.
        """
        damaged = []
        for t in self._table_dirs():
            for p in self._files(t):
                try:
                    if damage(p) is not None:
                        damaged.append(str(p))
                except FileNotFoundError:   # deleted since listed
                    continue
        for path in record_paths(self._runs_dir):
            try:
                read_record(path)
            except StoreError:
                damaged.append(str(path))
        return sorted(damaged)

    def clean_tmp(self, older_than: float = 3600.0) -> list[str]:
        """Delete temporary files of interrupted writes, last modified ``older_than`` seconds
        ago or more (the default hour spares writes still running); return their paths."""
        folders = [self._tables_dir / t for t in self._table_dirs()] + [self._runs_dir]
        now, removed = time.time(), []
        for folder in folders:
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            for e in entries:
                try:
                    if is_tmp(e.name) and e.is_file() and now - e.stat().st_mtime >= older_than:
                        os.unlink(e.path)
                        removed.append(e.path)
                except FileNotFoundError:  # finished or removed meanwhile
                    continue
        return sorted(removed)


def _to_arrow(df: pd.DataFrame, meta: dict | None) -> pa.Table:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"Store.write takes a pandas DataFrame, got {type(df).__name__}")
    if any(name is not None for name in df.index.names):
        df = df.reset_index(level=[n for n in df.index.names if n is not None])
    table = pa.Table.from_pandas(df, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[META_KEY] = canonical_json({} if meta is None else meta).encode("ascii")
    return table.replace_schema_metadata(metadata)


def _placeholder(files: list[Path]) -> pa.Table | None:
    """An empty table with the columns of the first readable footer among ``files`` (not
    verified: it shows no data, only names for SHOW TABLES)."""
    for path in files:
        try:
            return pq.read_schema(str(path)).empty_table()
        except (pa.ArrowException, OSError):
            continue
    return None


def _check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """StoreError unless ``sql`` is one statement that only reads (:data:`READ_STATEMENTS`);
    EXPLAIN counts as a read only when what it explains is one."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise StoreError(f"query failed: {first_line(e)}") from None
    if len(statements) != 1:
        raise StoreError(f"query refused: give exactly one statement, got {len(statements)}")
    kind = statements[0].type
    if kind == duckdb.StatementType.EXPLAIN:
        inner = re.match(r"\s*EXPLAIN\s+(?:\([^)]*\)\s*)?(?:ANALY[SZ]E\s+)?(.*)\Z",
                         statements[0].query, re.IGNORECASE | re.DOTALL)
        if inner is None:
            raise StoreError("query refused: cannot tell what this EXPLAIN explains")
        _check_read_only(con, inner.group(1))
        return
    if kind != duckdb.StatementType.SELECT:
        name = getattr(kind, "name", str(kind))
        raise StoreError(f"query refused: {name} statements are not allowed; a query over "
                         f"the results store only reads ({READ_STATEMENTS})")


def _identifiers(sql: str) -> set[str]:
    """Every word-like token in ``sql``, lower-cased (a superset of the names it uses)."""
    return {m.lower() for m in re.findall(r"[A-Za-z0-9_]+", sql)}


def _default_root(root: str | os.PathLike | None) -> str | os.PathLike:
    if root is not None:
        return root
    return os.environ.get("RNNLAB_RESULTS") or DEFAULT_ROOT


def open_store(root: str | os.PathLike | None = None) -> Store:
    """The store at ``root``, else ``$RNNLAB_RESULTS``, else ``./results/store``; created."""
    return Store(_default_root(root))


def load(table: str, root: str | os.PathLike | None = None) -> pd.DataFrame:
    """All of ``table`` as a DataFrame, e.g. ``rnnlab.store.load("curves")``.

    Opens the store like :func:`open_store`, but only reads: a missing store raises
    StoreError instead of being created.
    """
    return Store(_default_root(root), create=False).read(table)
