"""Where shards run. ``local`` (default): in this process, one shard after another (the
engine uses the cores inside a shard; RNNLAB_WORKERS=N runs N shards at a time in threads,
``processes=N`` / RNNLAB_PROCESSES=N in N worker processes). ``ray``: shards as Ray remote tasks.
Worker processes and Ray workers load the driver's plugins first (:mod:`.worker`).

A backend only computes: ``map(fn, shards)`` yields ``(index, result)`` as shards finish; the
driver alone writes the store. A shard's randomness depends only on its own config (which holds
the experiment seed and the shard index), never on the backend or the number of workers.
"""
from __future__ import annotations

from ..errors import ConfigError
from .local import LocalBackend

BACKENDS = ("local", "ray")


def get(name: str = "local", address: str | None = None, **kw):
    if name == "local":
        return LocalBackend(**kw)
    if name == "ray":
        from .ray_backend import RayBackend
        return RayBackend(address=address, **kw)
    raise ConfigError(f"backend: unknown backend {name!r}; known: {', '.join(BACKENDS)}")
