"""The tasks of the two papers (PROTOCOLS §2), as padded NumPy arrays in a :class:`TaskData`.

========================  ==============  ===============================================
name                      kind            paper
========================  ==============  ===============================================
``count``                 classify        Mehta (M) §III.A
``first``                 classify        Mehta (M) §III.A
``xor``                   classify        Mehta (M) §III.A
``reber``                 next-symbol     Sterin et al. (S) §III, Fig. 2
``embedded-reber``        next-symbol     Sterin et al. (S) §III, Fig. 5
``discrepancy``           probe           Sterin et al. (S) §V (the words u and v)
========================  ==============  ===============================================

Seeds: ``make(name, n, seed)`` draws from ``np.random.default_rng([seed, task_id])`` and split
``s`` of ``splits(name, seed)`` from ``np.random.default_rng([seed, task_id, SPLIT_IDS[s]])``,
with stable integers only, so the data are the same in every process and each split is its own
stream (its content does not depend on the other splits' sizes).
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from . import count, discrepancy_inputs, embedded_reber, first, reber, xor
from .base import TaskData, TaskSpec, _is_int, check_length, check_positive_int, check_seed
from .reber import ALPHABET
from .sentiment import NEG, POS, STOP

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    count.SPEC, first.SPEC, xor.SPEC, reber.SPEC, embedded_reber.SPEC, discrepancy_inputs.SPEC)}
#: the tasks of the papers (a user task cannot replace them or reuse their task_id)
BUILTIN = frozenset(TASKS)
KINDS = ("classify", "next-symbol", "probe")

#: stable stream ids of the splits; 0 is left out because SeedSequence([a, b, 0]) == ([a, b]).
SPLIT_IDS = {"train": 1, "val": 2, "test": 3}


def register(spec: TaskSpec) -> TaskSpec:
    """Add a task (see docs/extending.md, the task contract). ``spec.task_id`` enters every seed
    stream of the task: choose a stable integer >= 1000 (below is reserved for rnnlab) and never
    change it. A user task of the same name is replaced; built-in names and ids are refused."""
    if not isinstance(spec, TaskSpec):
        raise ConfigError(f"task: register() takes a rnnlab.tasks.TaskSpec, got {type(spec).__name__}")
    name = spec.name
    if not isinstance(name, str) or not name or set(name) & set(",:= \t\n/\\"):
        raise ConfigError(f"task: invalid task name {name!r} (non-empty, no spaces, commas, colons, '=' or slashes)")
    if name in BUILTIN:
        raise ConfigError(f"task: {name!r} is a built-in task; give yours another name")
    if not _is_int(spec.task_id) or spec.task_id < 1000:
        raise ConfigError(f"task {name}: task_id must be an integer >= 1000 (below is rnnlab's), "
                          f"got {spec.task_id!r}")
    for other in TASKS.values():
        if other.task_id == spec.task_id and other.name != name:
            raise ConfigError(f"task {name}: task_id {spec.task_id} is already the id of task "
                              f"{other.name!r}; every task needs its own seed stream")
    if spec.kind not in KINDS:
        raise ConfigError(f"task {name}: kind must be one of {', '.join(KINDS)}, got {spec.kind!r}")
    for field in ("vocab", "n_outputs"):
        v = getattr(spec, field)
        if not _is_int(v) or v < 1:
            raise ConfigError(f"task {name}: {field} must be a positive integer, got {v!r}")
    if not callable(spec.build):
        raise ConfigError(f"task {name}: build must be callable build(n, rng, length) -> TaskData")
    if not isinstance(spec.default_sizes, dict) or any(k not in SPLIT_IDS for k in spec.default_sizes):
        raise ConfigError(f"task {name}: default_sizes must map split names ({', '.join(SPLIT_IDS)}) "
                          f"to sizes, got {spec.default_sizes!r}")
    TASKS[name] = spec
    return spec


def known() -> dict[str, TaskSpec]:
    """Every registered task, after loading the automatic plugins (RNNLAB_PLUGINS, entry points)."""
    from .. import plugins
    plugins.autoload()
    return TASKS


def get(name) -> TaskSpec:
    """The registry entry of ``name``; ConfigError naming the known tasks otherwise."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        pass
    tasks = known()
    try:
        return tasks[name]
    except (KeyError, TypeError):
        raise ConfigError(f"task: unknown task {name!r}; known: {', '.join(tasks)}") from None


def _generate(spec: TaskSpec, n: int, entropy: list[int], length, meta: dict) -> TaskData:
    if length is None:
        length = spec.default_length
    if length is not None:
        length = check_length(length, spec)
    data = spec.build(n, np.random.default_rng(entropy), length)
    data.meta.update(meta)
    return data


def make(name: str, n: int, seed: int, length: int | None = 10) -> TaskData:
    """``n`` sequences of task ``name`` from seed ``seed``. ``length`` is the sentence length
    of the M tasks and the l of ``discrepancy`` (None: the task's default); the Reber tasks
    ignore it. ``discrepancy`` always returns its two fixed rows."""
    spec = get(name)
    n = check_positive_int(n, "n")
    seed = check_seed(seed)
    return _generate(spec, n, [seed, spec.task_id], length, {"seed": seed})


def splits(name: str, seed: int, sizes: dict[str, int] | None = None,
           length: int | None = 10) -> dict[str, TaskData]:
    """Train/val/test sets, each from its own seed stream. ``sizes`` maps split names (a subset
    of ``train``, ``val``, ``test``) to row counts; exactly those splits are returned. Default:
    the task's paper sizes (``TASKS[name].default_sizes``)."""
    spec = get(name)
    seed = check_seed(seed)
    sizes = dict(spec.default_sizes if sizes is None else sizes)
    unknown = [k for k in sizes if k not in SPLIT_IDS]
    if unknown or not sizes:
        raise ConfigError(f"sizes: split names must be among {', '.join(SPLIT_IDS)} "
                          f"(at least one), got {list(sizes)!r}")
    out = {}
    for split, size in sizes.items():
        size = check_positive_int(size, f"sizes[{split!r}]")
        out[split] = _generate(spec, size, [seed, spec.task_id, SPLIT_IDS[split]], length,
                               {"seed": seed, "split": split})
    return out


__all__ = ["TASKS", "BUILTIN", "SPLIT_IDS", "TaskData", "TaskSpec", "get", "known", "make", "register", "splits",
           "STOP", "POS", "NEG", "ALPHABET"]
