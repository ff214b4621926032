"""Reber's grammar as next-symbol prediction (Sterin et al. "S", §III and Fig. 2).

Alphabet ``B T S X V P E`` with ids 0..6 (one-hot, n = 7). The automaton (PROTOCOLS §2) has
these states; the name is the state the automaton is in *after* reading a prefix:

=========  ==================================================
``start``  nothing read yet; the only edge emits B
``q0``     after the initial B:  T -> q1,  P -> q4
``q1``     S -> q1,  X -> q2
``q2``     S -> end, X -> q4
``q4``     T -> q4,  V -> q5
``q5``     P -> q2,  V -> end
``end``    the only edge emits E
``done``   after E: the string is complete (no edges)
=========  ==================================================

(There is no ``q3``: the names follow PROTOCOLS.) Strings are sampled by walking from ``start``
and taking each outgoing edge with equal probability, until ``done``.

Encoding of a string ``s`` of length m: inputs ``s[0..m-2]``, targets ``s[1..m-1]``, so
``lengths = m - 1``; rows are padded with 0 to the longest in the batch. ``accept[i, t]`` is the
set of legal successors of the prefix ``s[0..t]``: a prediction is *valid* when its argmax is
one of them (S §III). ``meta["states"][i, t]`` is the state index after reading ``s[0..t]``
(-1 on padding), ``meta["state_names"]`` names the indices and ``meta["strings"]`` holds the
strings. The ``length`` argument of :func:`rnnlab.tasks.make` is accepted and ignored.
"""
from __future__ import annotations

import numpy as np

from .base import TaskData, TaskSpec

ALPHABET = "BTSXVPE"
SYMBOL = {c: i for i, c in enumerate(ALPHABET)}
REFERENCE = "Sterin, Farrugia, Gripon, An Intrinsic Difference Between Vanilla RNNs and GRU " \
            "Models, §III, Fig. 2"

#: state name -> [(emitted symbol, next state)], in the order of PROTOCOLS §2.
EDGES = {
    "start": [("B", "q0")],
    "q0": [("T", "q1"), ("P", "q4")],
    "q1": [("S", "q1"), ("X", "q2")],
    "q2": [("S", "end"), ("X", "q4")],
    "q4": [("T", "q4"), ("V", "q5")],
    "q5": [("P", "q2"), ("V", "end")],
    "end": [("E", "done")],
    "done": [],
}


class Automaton:
    """A deterministic automaton whose edges emit symbols of ``ALPHABET``.

    States are numbered in the order of ``edges``; the first is the start state, states without
    edges are final. ``legal[state]`` is the bool mask of symbols that may follow.
    """

    def __init__(self, edges: dict[str, list[tuple[str, str]]]):
        self.state_names = list(edges)
        self.index = {name: i for i, name in enumerate(self.state_names)}
        n_states, width = len(edges), max(len(out) for out in edges.values())
        self.degree = np.array([len(out) for out in edges.values()], np.int64)
        self.edge_symbol = np.full((n_states, width), -1, np.int64)
        self.edge_next = np.full((n_states, width), -1, np.int64)
        self.legal = np.zeros((n_states, len(ALPHABET)), bool)
        for s, out in enumerate(edges.values()):
            for k, (symbol, nxt) in enumerate(out):
                if self.legal[s, SYMBOL[symbol]]:
                    raise ValueError(f"state {self.state_names[s]!r}: two edges emit {symbol}")
                self.edge_symbol[s, k] = SYMBOL[symbol]
                self.edge_next[s, k] = self.index[nxt]
                self.legal[s, SYMBOL[symbol]] = True
        self.start = 0

    def successors(self, state: int) -> str:
        """The symbols that may follow ``state``, as a string."""
        return "".join(ALPHABET[k] for k in np.flatnonzero(self.legal[state]))

    def step(self, state: int, symbol: str) -> int:
        for k in range(self.degree[state]):
            if self.edge_symbol[state, k] == SYMBOL[symbol]:
                return int(self.edge_next[state, k])
        raise ValueError(f"symbol {symbol!r} is not legal in state {self.state_names[state]!r}")

    def walk(self, string: str) -> list[int]:
        """States after each prefix ``string[:t+1]``; ValueError at the first illegal symbol."""
        state, states = self.start, []
        for symbol in string:
            state = self.step(state, symbol)
            states.append(state)
        return states

    def accepts(self, string: str) -> bool:
        try:
            states = self.walk(string)
        except ValueError:
            return False
        return bool(states) and self.degree[states[-1]] == 0

    def sample(self, rng: np.random.Generator, n: int) -> list[str]:
        """``n`` complete strings, all walkers advanced together, each edge uniform."""
        state = np.full(n, self.start, np.int64)
        emitted = []
        active = self.degree[state] > 0
        while active.any():
            degree = self.degree[state]
            choice = np.minimum((rng.random(n) * degree).astype(np.int64), degree - 1)
            choice = np.where(active, choice, 0)
            emitted.append(np.where(active, self.edge_symbol[state, choice], -1))
            state = np.where(active, self.edge_next[state, choice], state)
            active = self.degree[state] > 0
        emitted = np.stack(emitted, axis=1)
        return ["".join(ALPHABET[k] for k in row if k >= 0) for row in emitted]


REBER = Automaton(EDGES)


def next_symbol_data(name: str, strings: list[str], automaton: Automaton,
                     meta: dict | None = None) -> TaskData:
    """Next-symbol prediction over ``strings`` (see the module docstring for the encoding)."""
    n = len(strings)
    lengths = np.array([len(s) - 1 for s in strings], np.int32)
    width = int(lengths.max())
    tokens = np.zeros((n, width), np.int32)
    targets = np.zeros((n, width), np.int32)
    target_mask = np.zeros((n, width), np.float32)
    states = np.full((n, width), -1, np.int32)
    for i, s in enumerate(strings):
        ids, m = [SYMBOL[c] for c in s], lengths[i]
        tokens[i, :m] = ids[:-1]
        targets[i, :m] = ids[1:]
        target_mask[i, :m] = 1.0
        states[i, :m] = automaton.walk(s)[:-1]
    accept = automaton.legal[np.maximum(states, 0)] & (states >= 0)[..., None]
    meta = dict(meta or {}, states=states, state_names=list(automaton.state_names),
                strings=list(strings))
    return TaskData(name=name, tokens=tokens, lengths=lengths, targets=targets,
                    target_mask=target_mask, accept=accept, vocab=len(ALPHABET),
                    n_outputs=len(ALPHABET), meta=meta)


def _build(n: int, rng: np.random.Generator, length: int) -> TaskData:
    return next_symbol_data("reber", REBER.sample(rng, n), REBER)


SPEC = TaskSpec(name="reber", task_id=4, module=__name__, reference=REFERENCE,
                kind="next-symbol", vocab=len(ALPHABET), n_outputs=len(ALPHABET),
                default_length=None, default_sizes={"train": 250, "val": 250, "test": 250},
                build=_build)
