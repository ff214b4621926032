"""Whole experiments in parallel: ``rnnlab reproduce --jobs N`` runs its experiments in N
spawned worker processes, each on its own share of the cores, longest first.

Why. One process running the experiments one after another kept 2 cores busy only ~1.5 of the
time (measured: quick reproduction, 594 s CPU in 390 s wall): compilation, the per-epoch
bookkeeping, a straggler model training alone and the figures run on one core. Two processes,
each pinned to its own core, keep both busy, and each XLA program runs on one core with no
splitting or waiting between cores.

Each worker process runs :func:`rnnlab.experiments.run` on its own handle of the same store
(the store takes concurrent writers: one file per result) and returns a status line; the driver
writes the report from the store afterwards. An experiment's results depend only on its config,
never on the process or core it ran on. Worker processes load the driver's plugins and use its
compilation cache (:mod:`rnnlab.backends.worker`), so a cold cache filled by one worker serves
the other.
"""
from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from functools import partial

from ..errors import RnnlabError
from . import local, worker
from .local import _cores


def default_jobs(device: str) -> int:
    """RNNLAB_JOBS, else one per core (at most 4) on a CPU with at least 2 cores; 1 on a GPU
    (the experiments would share one device)."""
    env = os.environ.get("RNNLAB_JOBS", "").strip()
    if env:
        return max(1, int(env))
    if device != "cpu":
        return 1
    return max(1, min(4, len(_cores()) or 1))


def _run_one(name: str, scale: str, out: str) -> dict:
    """One experiment in a worker process started by local._init_worker (its cores, no progress
    bars, the driver's device, plugins and compilation cache): its status for reproduce.json
    (never raises)."""
    from .. import experiments
    from .._jaxcfg import float64
    t0 = time.perf_counter()
    try:
        if local._SETUP_ERROR:            # the worker could not load the driver's plugins
            raise local._SETUP_ERROR[0]
        with float64():
            res = experiments.run(name, scale=scale, out=out, backend="local", progress=False)
    except Exception as e:  # noqa: BLE001 - one broken experiment must not stop the others
        msg = " ".join(str(e).split()) or type(e).__name__
        detail = f"{type(e).__name__}: {msg}" if isinstance(e, RnnlabError) else traceback.format_exc()
        return {"status": "failed", "wall_s": time.perf_counter() - t0,
                "error": f"{type(e).__name__}: {msg}", "detail": detail}
    finally:
        import jax
        jax.clear_caches()                  # this worker's programs: nothing shares them later
    return {"status": "done", "wall_s": res.wall_s, "reused": res.reused, "run_id": res.run_id,
            "verdicts": {c.id: c.verdict for c in res.claims}}


def run_parallel(names: list[str], scale: str, out: str, jobs: int, platform: str, order=None):
    """Yield (name, status) as experiments finish, `jobs` at a time in worker processes.
    order: names sorted longest first (default: as given)."""
    cores = _cores()
    jobs = max(1, min(jobs, len(names)))
    shares = [cores[k::jobs] for k in range(jobs)] if cores and jobs <= len(cores) else [[]] * jobs
    ctx = multiprocessing.get_context("spawn")            # JAX is not fork-safe
    queue = ctx.Queue()
    for share in shares:
        queue.put(share)
    todo = list(order or names)
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=local._init_worker,
                               initargs=(queue, worker.setup(), platform == "cpu"))
    try:
        for i, status in local._yield_as_done(pool, partial(_run_one, scale=scale, out=str(out)), todo, jobs):
            yield todo[i], status
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


#: wall seconds of each built-in experiment at quick scale in one worker on one core, cold
#: (reproductions of 7 Dec 2026, full training protocols everywhere), for the schedule. Longest
#: first also starts random-landscape before perturbation and embedded-reber before
#: gradient-distribution: the second of each pair reuses the first's stored models.
QUICK_WALL_S = {"trainability-grid": 110, "random-landscape": 59, "perturbation": 44, "gated-cells": 53,
                "discrepancy": 59, "capacity-inits": 40, "reber": 23, "update-cosine": 24, "lyapunov": 35,
                "capacity-bits": 17, "fixed-points": 10, "state-trajectories": 9, "word-geometry": 21,
                "embedded-reber": 58, "gradient-distribution": 14}


#: the same at paper scale: each experiment's wall seconds in one worker on one core of the
#: two-worker `reproduce --scale paper` of 7 Dec 2026 (night, a fresh clone, empty cache). The
#: costs differ from the quick ones (capacity-bits: 17 s at quick, 175 s at paper), so each
#: scale schedules by its own.
PAPER_WALL_S = {"random-landscape": 537, "capacity-bits": 175, "embedded-reber": 174, "gated-cells": 122,
                "capacity-inits": 107, "trainability-grid": 106, "lyapunov": 98, "gradient-distribution": 42,
                "discrepancy": 41, "update-cosine": 30, "reber": 29, "word-geometry": 17,
                "fixed-points": 16, "perturbation": 14, "state-trajectories": 7}


def longest_first(names: list[str], scale: str = "quick") -> list[str]:
    """`names` longest first by the measured costs of `scale` (:data:`PAPER_WALL_S` at paper
    scale, else :data:`QUICK_WALL_S`): the long ones first keeps the workers' finish times
    close. An experiment it does not know (a plugin's) goes first."""
    wall = PAPER_WALL_S if scale == "paper" else QUICK_WALL_S
    big = max(wall.values()) + 1.0
    return sorted(names, key=lambda n: -wall.get(n, big))
