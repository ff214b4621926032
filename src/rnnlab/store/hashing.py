"""Canonical JSON and config hashing.

A config hash names a result: the same settings must give the same hash in every process,
on every machine, whatever the dict order or the numeric type (Python or NumPy) used to
write a value.  :func:`canonical` reduces a value to plain JSON types, :func:`canonical_json`
writes it with sorted keys and no whitespace, :func:`config_hash` is the first 16 hex digits
of its SHA-256.

Floats are written with :func:`repr` (the shortest text that reads back to the same double),
so two floats hash alike only if they are the same double.  An ``int`` and a ``float`` of equal
value (``1`` and ``1.0``) stay different.  ``np.float32(0.1)`` becomes the double it holds,
``0.10000000149011612``, not ``0.1``.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["canonical", "canonical_json", "config_hash"]


def canonical(obj: Any) -> Any:
    """``obj`` as nested dicts, lists, str, int, float, bool and None only.

    Dataclasses become dicts of their fields, tuples and NumPy arrays become lists, NumPy
    scalars become the Python scalar of the same value, enums their value, paths strings,
    dates ISO strings, sets sorted lists.  Dict keys become strings (``1`` -> ``"1"``); two
    keys that become the same string raise ``ValueError``.  Anything else raises ``TypeError``.
    """
    if obj is None:
        return None
    if isinstance(obj, enum.Enum):  # before int/str: IntEnum and StrEnum are both
        return canonical(obj.value)
    if isinstance(obj, bool):  # before int: bool is an int
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):  # np.float64 is a float too
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, np.generic):
        return canonical(obj.item())
    if isinstance(obj, np.ndarray):
        return canonical(obj.tolist())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return _canonical_dict(obj)
    if isinstance(obj, (list, tuple)):
        return [canonical(x) for x in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((canonical(x) for x in obj), key=canonical_json)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (_dt.date, _dt.time)):  # datetime is a date
        return obj.isoformat()
    if hasattr(obj, "__array__"):  # JAX arrays and the like
        return canonical(np.asarray(obj))
    raise TypeError(f"cannot turn a {type(obj).__module__}.{type(obj).__qualname__} into JSON")


def _canonical_dict(obj: Mapping) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        ckey = canonical(key)
        name = ckey if isinstance(ckey, str) else json.dumps(ckey, sort_keys=True)
        if name in out:
            raise ValueError(f"two dict keys both become {name!r} in JSON")
        out[name] = canonical(value)
    return out


def canonical_json(obj: Any) -> str:
    """The canonical JSON text of ``obj``: sorted keys, no spaces, ASCII only."""
    return json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=True)


def config_hash(obj: Any) -> str:
    """First 16 hex digits of the SHA-256 of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("ascii")).hexdigest()[:16]
