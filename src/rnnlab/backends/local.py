"""Run shards in this process: one after another, or up to `workers` at a time in threads.

Shards are independent populations and JAX releases the GIL while it computes or compiles,
so several can run at once; each gets an equal share of the cores for its own thread shards
(``engine.train.cpu_share``). Off by default: on 2 cores it was slower (see
:func:`default_workers`). Results do not depend on the number of workers: a shard's
computation depends only on its own config.
"""
from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from ..errors import ConfigError


def default_workers() -> int:
    """RNNLAB_WORKERS, else 1. Measured on 2 cores (rnnlab reproduce --scale quick, warm
    compilation cache): 2 workers took 2 min 33 s against 2 min 10 s for 1, with half again
    as much CPU time: each shard's XLA computations already spread over the cores, and two at
    once mostly contend. Worth trying where a sweep has many small shards and many cores."""
    env = os.environ.get("RNNLAB_WORKERS")
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"RNNLAB_WORKERS: must be a positive integer, got {env!r}")
        return n
    return 1


class LocalBackend:
    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = default_workers() if workers is None else int(workers)
        if self.workers < 1:
            raise ConfigError(f"workers: must be a positive integer, got {workers!r}")

    def map(self, fn, shards):
        """Yield (index, fn(shard)) as shards finish (in order when one runs at a time)."""
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
            queue = list(enumerate(shards))
            running = {}
            while queue or running:
                while queue and len(running) < n:          # submit lazily: an error stops the rest
                    i, shard = queue.pop(0)
                    running[pool.submit(call, shard)] = i
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in sorted(done, key=lambda f: running[f]):
                    i = running.pop(f)
                    yield i, f.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self):
        pass
