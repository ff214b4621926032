"""Embedded Reber grammar as next-symbol prediction (Sterin et al. "S", §III and Fig. 5).

A string is ``B T <reber> T E`` or ``B P <reber> P E`` with probability 1/2 each, where
``<reber>`` is a complete Reber string, B...E included (see :mod:`rnnlab.tasks.reber`). The
symbol after the inner E must repeat the second symbol: the long-term dependency of S §III.

The automaton is two copies of Reber's, one per branch. State names:
``start``, ``q0`` (after the outer B), ``T/<reber state>`` and ``P/<reber state>`` (inside the
T or P branch: ``T/start`` is right after ``B T``, ``T/done`` right after the inner E, whose only
legal successor is T), ``end`` (after the closing T or P; emits E) and ``done``.

The encoding is the one of :func:`rnnlab.tasks.reber.next_symbol_data`. Extra meta:
``branch`` int32 [N] (0 for T, 1 for P) and ``long_term_pos`` int32 [N], the input position
whose input is the inner E, so ``targets[i, long_term_pos[i]]`` is the second symbol of row i.
"""
from __future__ import annotations

import numpy as np

from .base import TaskData, TaskSpec
from .reber import ALPHABET, EDGES, REFERENCE as _REBER_REFERENCE, Automaton, next_symbol_data

BRANCHES = "TP"
REFERENCE = _REBER_REFERENCE.replace("Fig. 2", "Fig. 5")


def embedded_edges() -> dict[str, list[tuple[str, str]]]:
    edges = {"start": [("B", "q0")], "q0": [(b, f"{b}/start") for b in BRANCHES]}
    for b in BRANCHES:
        for state, out in EDGES.items():
            edges[f"{b}/{state}"] = [(c, f"{b}/{nxt}") for c, nxt in out] or [(b, "end")]
    edges["end"] = [("E", "done")]
    edges["done"] = []
    return edges


EMBEDDED_REBER = Automaton(embedded_edges())


def _build(n: int, rng: np.random.Generator, length: int) -> TaskData:
    strings = EMBEDDED_REBER.sample(rng, n)
    meta = {"branch": np.array([BRANCHES.index(s[1]) for s in strings], np.int32),
            "long_term_pos": np.array([len(s) - 3 for s in strings], np.int32)}
    return next_symbol_data("embedded-reber", strings, EMBEDDED_REBER, meta)


SPEC = TaskSpec(name="embedded-reber", task_id=5, module=__name__, reference=REFERENCE,
                kind="next-symbol", vocab=len(ALPHABET), n_outputs=len(ALPHABET),
                default_length=None, default_sizes={"train": 2000, "val": 500, "test": 500},
                build=_build)
