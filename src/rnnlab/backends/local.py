"""Run shards on this machine: in this process, one after another or up to `workers` at a time
in threads; in `processes` spawned worker processes (``--processes N``, RNNLAB_PROCESSES=N); or,
for shards an experiment marks ``pinned``, in one worker process per core.

Shards are independent populations and JAX releases the GIL while it computes or compiles,
so several can run at once; each gets an equal share of the cores for its own thread shards
(``engine.train.cpu_share``). Off by default: on 2 cores it was slower (see
:func:`default_workers`).

Pinned shards (``map(fn, shards, pinned=True)``) are long, compute-bound and independent, like
random-landscape's blocks of draws. On a CPU with several cores they run in a pool of spawned
worker processes, each pinned to one core before JAX starts, so each XLA program runs on one
core with no splitting or waiting between cores (on 2 cores: GRU(4,4) draws 1.3-1.4x faster
than two threads sharing both cores). RNNLAB_PINNED=0 runs them in this process instead.

Worker processes (``processes``): every shard runs in one of N spawned processes, each on its
own share of the cores (N at most the cores: disjoint sets of cores). Every worker process loads
the driver's plugins before it runs anything (:mod:`rnnlab.backends.worker`), so a sweep over a
plugin's cell runs there as it runs here.

Results do not depend on the number of workers or on where a shard ran: a shard's computation
depends only on its own config.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from functools import partial

from .._jaxcfg import x64
from ..envvars import positive_int
from ..errors import ConfigError, RnnlabError
from . import worker


def default_workers() -> int:
    """RNNLAB_WORKERS, else 1. Measured on 2 cores (rnnlab reproduce --scale quick, warm
    compilation cache): 2 workers took 2 min 33 s against 2 min 10 s for 1, with half again
    as much CPU time: each shard's XLA computations already spread over the cores, and two at
    once mostly contend. Worth trying where a sweep has many small shards and many cores."""
    return positive_int("RNNLAB_WORKERS") or 1


def _cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:                       # no affinity API (macOS, Windows): not pinned
        return []


def pinned_workers() -> int:
    """Worker processes for pinned shards: one per core this process may use, when JAX computes
    on the CPU and there are at least 2 cores; 0 (run them here) otherwise or with
    RNNLAB_PINNED=0."""
    if os.environ.get("RNNLAB_PINNED", "1") == "0":
        return 0
    import jax
    if jax.default_backend() != "cpu":
        return 0
    n = len(_cores())
    return n if n >= 2 else 0


def default_processes() -> int:
    """RNNLAB_PROCESSES, else 0 (shards run in this process)."""
    return positive_int("RNNLAB_PROCESSES") or 0


_SETUP_ERROR: list = []


def _init_worker(cores, setup, cpu_only) -> None:
    """Worker initializer: take its cores before JAX creates its thread pool, keep progress bars
    (the driver's job) quiet, and load the driver's plugins before any shard is unpickled (an
    error is raised by the first shard, with its type, instead of breaking the pool)."""
    mine = cores.get()
    if mine:
        os.sched_setaffinity(0, set(mine))
    os.environ["RNNLAB_PROGRESS"] = "0"
    if cpu_only:
        os.environ["JAX_PLATFORMS"] = "cpu"
    try:
        worker.prepare(setup)
    except BaseException as e:   # noqa: BLE001 - re-raised by _run_in_worker, in the driver
        _SETUP_ERROR.append(e)


def _run_in_worker(fnref, setup, shard):
    if _SETUP_ERROR:
        raise _SETUP_ERROR[0]
    return worker.run_shard(fnref, shard, setup)


def _yield_as_done(pool, fn, shards, n):
    """Submit shards lazily (at most n in flight, so an error stops the rest) and yield
    (index, result) as they finish, in index order among those finishing together."""
    queue = list(enumerate(shards))
    running = {}
    while queue or running:
        while queue and len(running) < n:
            i, shard = queue.pop(0)
            running[pool.submit(fn, shard)] = i
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for f in sorted(done, key=lambda f: running[f]):
            i = running.pop(f)
            yield i, f.result()


class LocalBackend:
    name = "local"

    def __init__(self, workers: int | None = None, processes: int | None = None):
        self.workers = default_workers() if workers is None else int(workers)
        if self.workers < 1:
            raise ConfigError(f"workers: must be a positive integer, got {workers!r}")
        self.processes = default_processes() if processes is None else processes
        if isinstance(self.processes, bool) or not isinstance(self.processes, int) or self.processes < 0:
            raise ConfigError(f"processes: must be a non-negative integer, got {processes!r}")
        self._pools: dict[str, tuple[ProcessPoolExecutor, int]] = {}

    def map(self, fn, shards, pinned: bool = False):
        """Yield (index, fn(shard)) as shards finish (in order when one runs at a time). With
        `processes`, and for pinned shards (see the module's docstring), shards run in worker
        processes; fn must then be a module-level function and shards and results picklable."""
        if pinned and len(shards) > 1 and pinned_workers():
            yield from self._map_processes("pinned", fn, shards)
            return
        if self.processes and shards:
            yield from self._map_processes("processes", fn, shards)
            return
        n = min(self.workers, len(shards))
        if n <= 1:
            for i, shard in enumerate(shards):
                yield i, x64(fn)(shard)
            return
        from ..engine.train import _cpus, cpu_share
        share = max(1, _cpus() // n)

        @x64                      # a thread starts with JAX's global setting: float64 again
        def call(shard):
            with cpu_share(share):
                return fn(shard)
        pool = ThreadPoolExecutor(n, thread_name_prefix="rnnlab-local")
        try:
            yield from _yield_as_done(pool, call, shards, n)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _pool(self, kind: str) -> tuple[ProcessPoolExecutor, int]:
        """The worker processes of `kind` ("pinned": one per core, each on its core;
        "processes": `self.processes`, on disjoint shares of the cores when there are enough),
        started on first use and kept until :meth:`close` (starting one costs a few seconds: a
        Python process importing JAX)."""
        if kind not in self._pools:
            cores = _cores()
            if kind == "pinned":
                n, shares, cpu_only = len(cores), [[c] for c in cores], True
            else:
                n = self.processes
                shares = [cores[k::n] for k in range(n)] if cores and n <= len(cores) else [[]] * n
                cpu_only = False
            ctx = multiprocessing.get_context("spawn")           # JAX is not fork-safe
            queue = ctx.Queue()
            for share in shares:
                queue.put(share)
            pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker,
                                       initargs=(queue, worker.setup(), cpu_only))
            self._pools[kind] = (pool, n)
        return self._pools[kind]

    def _map_processes(self, kind: str, fn, shards):
        worker.check_shippable(shards)
        pool, n = self._pool(kind)
        call = partial(_run_in_worker, worker.ref(fn), worker.setup())
        try:
            yield from _yield_as_done(pool, call, shards, n)
        except BrokenProcessPool as e:
            self.close()
            hint = ("RNNLAB_PINNED=0 runs these shards in this process" if kind == "pinned"
                    else "without --processes (RNNLAB_PROCESSES) shards run in this process")
            raise RnnlabError(f"a worker process died (out of memory?): {e}; {hint}") from None
        except BaseException:
            self.close()                 # an error or an interrupt: stop the workers' other shards
            raise

    def close(self):
        for pool, _ in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools = {}
