"""Run shards on this machine: in this process, one after another or up to `workers` at a time
in threads; or, for shards an experiment marks ``pinned``, in one worker process per core.

Shards are independent populations and JAX releases the GIL while it computes or compiles,
so several can run at once; each gets an equal share of the cores for its own thread shards
(``engine.train.cpu_share``). Off by default: on 2 cores it was slower (see
:func:`default_workers`).

Pinned shards (``map(fn, shards, pinned=True)``) are long, compute-bound and independent, like
random-landscape's blocks of draws. On a CPU with several cores they run in a pool of spawned
worker processes, each pinned to one core before JAX starts, so each XLA program runs on one
core with no splitting or waiting between cores (on 2 cores: GRU(4,4) draws 1.3-1.4x faster
than two threads sharing both cores). RNNLAB_PINNED=0 runs them in this process instead.

Results do not depend on the number of workers or on where a shard ran: a shard's computation
depends only on its own config.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from ..envvars import positive_int
from ..errors import ConfigError, RnnlabError


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


def _pin_worker(cores) -> None:
    """Worker initializer: take a core of its own before JAX creates its thread pool, and keep
    progress bars (the driver's job) quiet."""
    core = cores.get()
    os.sched_setaffinity(0, {core})
    os.environ["RNNLAB_PROGRESS"] = "0"
    os.environ["JAX_PLATFORMS"] = "cpu"


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

    def __init__(self, workers: int | None = None):
        self.workers = default_workers() if workers is None else int(workers)
        if self.workers < 1:
            raise ConfigError(f"workers: must be a positive integer, got {workers!r}")
        self._procs: ProcessPoolExecutor | None = None
        self._n_procs = 0

    def map(self, fn, shards, pinned: bool = False):
        """Yield (index, fn(shard)) as shards finish (in order when one runs at a time). Pinned
        shards run in the pinned worker processes (see the module's docstring); fn must then be
        a module-level function and shards and results picklable."""
        if pinned and len(shards) > 1 and pinned_workers():
            yield from self._map_pinned(fn, shards)
            return
        n = min(self.workers, len(shards))
        if n <= 1:
            for i, shard in enumerate(shards):
                yield i, fn(shard)
            return
        from ..engine.train import _cpus, cpu_share
        share = max(1, _cpus() // n)

        def call(shard):
            with cpu_share(share):
                return fn(shard)
        pool = ThreadPoolExecutor(n, thread_name_prefix="rnnlab-local")
        try:
            yield from _yield_as_done(pool, call, shards, n)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _pool(self) -> tuple[ProcessPoolExecutor, int]:
        """The pinned worker processes, started on first use and kept until :meth:`close`
        (starting one costs a few seconds: a Python process importing JAX)."""
        if self._procs is None:
            cores = _cores()
            ctx = multiprocessing.get_context("spawn")           # JAX is not fork-safe
            queue = ctx.Queue()
            for c in cores:
                queue.put(c)
            self._procs = ProcessPoolExecutor(len(cores), mp_context=ctx, initializer=_pin_worker,
                                              initargs=(queue,))
            self._n_procs = len(cores)
        return self._procs, self._n_procs

    def _map_pinned(self, fn, shards):
        pool, n = self._pool()
        try:
            yield from _yield_as_done(pool, fn, shards, n)
        except BrokenProcessPool as e:
            self.close()
            raise RnnlabError(f"a pinned worker process died (out of memory?): {e}; "
                              "RNNLAB_PINNED=0 runs these shards in this process") from None
        except BaseException:
            self.close()                 # an error or an interrupt: stop the workers' other shards
            raise

    def close(self):
        if self._procs is not None:
            self._procs.shutdown(wait=True, cancel_futures=True)
            self._procs = None
