"""Run shards as Ray remote tasks, on one machine or a cluster.

``RayBackend(address)`` connects the driver (this process) to Ray:

* ``address`` given (``"host:port"`` of a head started with ``ray start --head``): that cluster;
* otherwise Ray's own lookup: ``$RAY_ADDRESS``, else the cluster of the last ``ray start`` on
  this machine, else a new local Ray instance: a private head started with ``ray start`` in its
  own process group (:mod:`rnnlab.backends.ray_head`: never forked from this process, which
  may run JAX), stopped by :meth:`close`.

``map(fn, shards)`` submits one remote task per shard (a shard is a whole population, never one
model), each asking for ``num_cpus`` CPUs (default 1), and yields ``(index, result)`` in the order
the tasks finish (``ray.wait``). Results come back to the driver, which alone writes the store,
so workers need no access to the results folder. A shard's randomness depends only on its dict,
so the tables do not depend on the backend, on the number of workers or on the order of
completion.

Workers load the driver's plugins before they run a shard (:mod:`rnnlab.backends.worker`): a
plugin file must be at the same path on every machine (a shared file system), a plugin module
importable there. Workers import ``rnnlab``: its source folder is put on their ``PYTHONPATH`` (enough for a
checkout or an editable install shared by the machines; on a cluster whose machines lack the
code, install rnnlab there or pass ``runtime_env={"py_modules": [rnnlab]}``). Workers compute on
the CPU (``JAX_PLATFORMS=cpu``) unless ``num_gpus`` > 0, with the driver's ``JAX_*`` and
``XLA_FLAGS`` environment (e.g. a shared ``JAX_COMPILATION_CACHE_DIR``). A plain ``host:port``
address that nothing answers on is refused at once (ConfigError naming ``address``).

Ray is an optional extra: ``pip install 'rnnlab[ray]'``.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

from ..errors import ConfigError, RnnlabError


def _call(fnref, shard, setup):
    """What a worker runs: load the driver's plugins, then the shard function (a reference,
    looked up after the plugins are loaded) on its shard, with float64 on."""
    from .worker import run_shard
    return run_shard(fnref, shard, setup)


def _source_dir() -> str:
    """The folder holding the ``rnnlab`` package (``src`` of a checkout, or site-packages)."""
    import rnnlab
    return str(Path(rnnlab.__file__).resolve().parent.parent)


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A plain ``host:port`` that nothing answers on is a ConfigError now, not minutes of Ray
    retrying. Other forms (None, "auto", "local", "ray://...") are left to Ray."""
    if not address or "://" in address or address in ("auto", "local"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"address: expected HOST:PORT of a Ray head node, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"address: no Ray cluster answers at {address} ({e.strerror or e}); "
                          f"start one with `ray start --head --port {port}`") from None


def _last_ray_start() -> str | None:
    """The address of the cluster of the last ``ray start`` on this machine, if Ray recorded one
    (what ``ray.init()`` would connect to)."""
    try:
        from ray._private.utils import read_ray_address
        return read_ray_address()
    except (ImportError, AttributeError, OSError):
        return None


class RayBackend:
    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: float = 1, num_gpus: float = 0,
                 max_in_flight: int | None = None, runtime_env: dict | None = None,
                 init_kwargs: dict | None = None):
        try:
            import ray
        except ImportError:
            raise ConfigError("backend: ray is not installed; pip install 'rnnlab[ray]'") from None
        if not (num_cpus > 0):
            raise ConfigError(f"num_cpus: must be > 0, got {num_cpus!r}")
        if not (num_gpus >= 0):
            raise ConfigError(f"num_gpus: must be >= 0, got {num_gpus!r}")
        if max_in_flight is not None and (int(max_in_flight) != max_in_flight or max_in_flight < 1):
            raise ConfigError(f"max_in_flight: must be a positive integer, got {max_in_flight!r}")
        self._ray = ray
        self.address = address
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.max_in_flight = None if max_in_flight is None else int(max_in_flight)
        self._connected_here = False
        self._head = None              # a private local head this backend started (ray_head)
        if ray.is_initialized():       # the caller connected Ray already: use it, leave it to them
            return
        env = {"PYTHONPATH": os.pathsep.join(p for p in (_source_dir(), os.environ.get("PYTHONPATH")) if p)}
        # the driver's JAX/XLA settings (compilation cache, flags) hold for the workers too
        env.update({k: v for k, v in os.environ.items() if k.startswith("JAX_") or k == "XLA_FLAGS"})
        if not num_gpus:
            env["JAX_PLATFORMS"] = "cpu"
        renv = dict(runtime_env or {})
        renv["env_vars"] = {**env, **renv.get("env_vars", {})}
        kw = {"runtime_env": renv, "log_to_driver": False, "configure_logging": False}
        kw.update(init_kwargs or {})
        if address is None and not os.environ.get("RAY_ADDRESS") and not _last_ray_start():
            # a new local instance: a private head started by `ray start` (never forked from
            # this process, which may run JAX; see ray_head), stopped by close()
            from .ray_head import LocalHead
            self._head = LocalHead(num_cpus=os.cpu_count()).start()
            address = self._head.address
        _check_reachable(address or os.environ.get("RAY_ADDRESS"))
        try:
            ray.init(address=address, **kw)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as e:
            where = address or os.environ.get("RAY_ADDRESS") or "the local machine"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            hint = ""
            if address and "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").exists():
                hint = ("; a cluster started while ~/.ray/auth_token existed uses token authentication: "
                        "set RAY_AUTH_MODE=token to connect with that token")
            self._stop_head()
            raise ConfigError(f"address: cannot connect to a Ray cluster at {where} ({first}){hint}") from None
        self._connected_here = True

    def map(self, fn, shards, pinned: bool = False):
        """Yield ``(index, fn(shards[index]))`` as the remote tasks finish (`pinned` changes
        nothing here: every task already runs in a worker process of its own). A task's error is
        raised here (Ray re-raises it as an instance of the original exception type); closing the
        generator early cancels the tasks still pending."""
        from . import worker
        worker.check_shippable(shards)
        setup, fnref = worker.setup(), worker.ref(fn)
        ray = self._ray
        # Ray's default retries cover a lost worker or node: a shard is deterministic, so a
        # retried shard gives the same tables (an exception raised by fn is never retried)
        remote = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus)(_call)
        queue = list(enumerate(shards))[::-1]        # pop() from the end: submission in order
        index: dict = {}
        try:
            while queue or index:
                while queue and (self.max_in_flight is None or len(index) < self.max_in_flight):
                    i, shard = queue.pop()
                    index[remote.remote(fnref, shard, setup)] = i
                done, _ = ray.wait(list(index), num_returns=1)
                for ref in done:
                    i = index.pop(ref)
                    try:
                        out = ray.get(ref)
                    except ray.exceptions.RayTaskError as e:
                        if isinstance(e.cause, RnnlabError):   # a deliberate error: as it was raised
                            raise e.cause from None
                        raise
                    yield i, out
        finally:
            for ref in index:                        # left pending by an error or an early close
                ray.cancel(ref, force=True)

    def close(self) -> None:
        """Disconnect, if this backend connected; a local instance it started stops with it."""
        if self._connected_here and self._ray.is_initialized():
            self._ray.shutdown()
        self._connected_here = False
        self._stop_head()

    def _stop_head(self) -> None:
        if self._head is not None:
            self._head.stop()
            self._head = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
