"""Run records: one small JSON file per run, ``runs/<run_id>.json``, replaced atomically.

A record says what ran and how it went, e.g. ``{"experiment": ..., "config": {...},
"status": "running" | "done" | "failed", "started": ..., "finished": ..., "wall_s": ...}``.
It is rewritten whole when the status changes, so a reader sees the old or the new record, and
it carries a checksum (``.<run_id>.json.sha256``, see :mod:`rnnlab.store.files`): a truncated
or altered record is a :class:`~rnnlab.errors.DamagedFileError`, never a wrong record.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DamagedFileError
from .files import atomic_write, first_line, is_tmp, read_verified
from .hashing import canonical, canonical_json

BASE_COLUMNS = ("run_id", "experiment", "status", "started", "finished", "wall_s", "config")
"""Columns :func:`records_frame` always has, in this order, even with no runs."""


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Atomically write ``record`` as JSON (NumPy values, dataclasses etc. made plain)."""
    if not isinstance(record, dict):
        raise TypeError(f"a run record is a dict, got {type(record).__name__}")
    text = json.dumps(canonical(record), indent=1, sort_keys=True, allow_nan=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode("utf-8")), checksum=True)


def read_record(path: Path) -> dict[str, Any] | None:
    """The record in ``path``, None if there is none; DamagedFileError if it is damaged."""
    try:
        data, _ = read_verified(path)
    except FileNotFoundError:
        return None
    try:
        record = json.loads(data.decode("utf-8"))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DamagedFileError(path, first_line(e)) from None
    if not isinstance(record, dict):
        raise DamagedFileError(path, "not a JSON object")
    return record


def record_paths(folder: Path) -> list[Path]:
    """The complete record files in ``folder``, sorted by run id."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    return sorted(Path(e.path) for e in entries
                  if e.name.endswith(".json") and not is_tmp(e.name) and e.is_file())


def records_frame(folder: Path) -> pd.DataFrame:
    """One row per run: the :data:`BASE_COLUMNS`, then any other fields, sorted by name.

    Dict and list values (``config`` above all) are given as canonical JSON strings, which
    DuckDB's ``json_extract`` and pandas' ``json.loads`` both read.
    """
    rows = []
    for path in record_paths(folder):
        record = read_record(path)
        if record is None:  # removed since listed
            continue
        row = {k: canonical_json(v) if isinstance(v, (dict, list)) else v
               for k, v in record.items()}
        row["run_id"] = path.name[: -len(".json")]
        rows.append(row)
    extra = sorted({k for row in rows for k in row} - set(BASE_COLUMNS))
    columns = list(BASE_COLUMNS) + extra
    if not rows:
        frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
        frame["wall_s"] = frame["wall_s"].astype("float64")
        return frame
    return pd.DataFrame(rows, columns=columns)
