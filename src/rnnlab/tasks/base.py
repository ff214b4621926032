"""The data container every task returns, the registry entry that describes a task, and the
argument checks shared by :func:`rnnlab.tasks.make` and :func:`rnnlab.tasks.splits`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np

from ..errors import ConfigError


@dataclass
class TaskData:
    """N sequences of one task, padded to a common length T.

    Position ``t`` of row ``i`` feeds ``tokens[i, t]`` to the network; where
    ``target_mask[i, t] == 1`` the output there is scored against ``targets[i, t]`` (loss) and
    counted correct when its argmax lies in ``accept[i, t]`` (accuracy).
    """

    name: str
    tokens: np.ndarray        # int32 [N, T] input token ids, 0 after `lengths`
    lengths: np.ndarray       # int32 [N] number of valid input positions
    targets: np.ndarray       # int32 [N, T] target class at each position (0 where unused)
    target_mask: np.ndarray   # float32 [N, T] 1 where a loss/accuracy is taken
    accept: np.ndarray        # bool [N, T, n_outputs] outputs counted as correct
    vocab: int                # number of input token ids
    n_outputs: int
    labels: np.ndarray | None = None   # int32 [N] for classification tasks
    meta: dict = field(default_factory=dict)

    #: meta entries that are Python lists with one item per row (sliced by :meth:`subset`).
    ROW_LISTS: ClassVar[tuple[str, ...]] = ("strings",)

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, idx) -> "TaskData":
        """Rows ``idx`` (integer indices, a slice or a boolean mask; an int gives one row).
        Meta arrays whose leading dimension is N and the per-row lists named in ``ROW_LISTS``
        are sliced too; every other meta entry (``state_names``, ``seed``...) is carried over
        unchanged."""
        n = len(self)
        rows = np.atleast_1d(np.arange(n)[idx])
        meta = {}
        for key, value in self.meta.items():
            if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == n:
                meta[key] = value[rows]
            elif key in self.ROW_LISTS:
                meta[key] = [value[i] for i in rows]
            else:
                meta[key] = value
        return TaskData(
            name=self.name, tokens=self.tokens[rows], lengths=self.lengths[rows],
            targets=self.targets[rows], target_mask=self.target_mask[rows],
            accept=self.accept[rows], vocab=self.vocab, n_outputs=self.n_outputs,
            labels=None if self.labels is None else self.labels[rows], meta=meta)

    def __repr__(self) -> str:
        n, t = self.tokens.shape
        return (f"TaskData({self.name!r}, N={n}, T={t}, vocab={self.vocab}, "
                f"n_outputs={self.n_outputs}, meta keys={sorted(self.meta)})")


@dataclass(frozen=True)
class TaskSpec:
    """One registry entry.

    ``build(n, rng, length)`` makes the data from a ``numpy.random.Generator``; callers use
    :func:`rnnlab.tasks.make` / :func:`rnnlab.tasks.splits`, which check the arguments and pick
    the seed stream. ``task_id`` is the stable integer that enters every seed stream: never
    change or reuse one. ``default_length`` is None where the grammar sets the length (Reber);
    ``fixed_rows`` is set for deterministic tasks that ignore ``n`` and ``seed``.
    """

    name: str
    task_id: int
    module: str
    reference: str
    kind: str                      # "classify" | "next-symbol" | "probe"
    vocab: int
    n_outputs: int
    default_length: int | None
    default_sizes: dict
    build: Callable[[int, np.random.Generator, int], TaskData] = field(repr=False)
    min_length: int = 1
    fixed_rows: int | None = None


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


#: sanity limits (a typo like 10**9 fails at once instead of trying to allocate it)
MAX_SEQUENCES = 10**7
MAX_LENGTH = 10**6


def check_positive_int(value, name: str, limit: int = MAX_SEQUENCES) -> int:
    """``value`` as a Python int, or ConfigError("<name>: must be a positive integer, got ...");
    also a ConfigError above ``limit``."""
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
    if value > limit:
        raise ConfigError(f"{name}: {int(value)} is too large (at most {limit})")
    return int(value)


def check_seed(value) -> int:
    """Seeds enter ``np.random.SeedSequence``, which needs non-negative integers."""
    if not _is_int(value) or value < 0:
        raise ConfigError(f"seed: must be a non-negative integer, got {value!r}")
    return int(value)


def check_length(value, spec: TaskSpec) -> int:
    """``length`` as a Python int, at least 1 and at least the task's ``min_length``."""
    if not _is_int(value) or value < 1:
        raise ConfigError(f"length: must be >= 1, got {value!r}")
    if value > MAX_LENGTH:
        raise ConfigError(f"length: {int(value)} is too large (at most {MAX_LENGTH})")
    if value < spec.min_length:
        raise ConfigError(f"length: task {spec.name!r} needs length >= {spec.min_length}, "
                          f"got {value!r}")
    return int(value)
