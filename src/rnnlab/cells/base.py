"""What a cell is: a pure step function plus a description of its parameters.

A cell is written for ONE model (no model axis): ``step(p, state, x) -> state``.
The engine adds the model axis with ``jax.vmap``; the same step serves training,
random sweeps, Jacobians and the discrepancy measure.

Parameter shapes are written with symbolic axes so that padding masks can be
derived for any cell without cell-specific code:
  "gh" -> gates * hidden (gate blocks stacked like torch),  "h" -> hidden,
  "in" -> input size.  Every parameter has a role: "w_in" (multiplies x),
  "w_rec" (multiplies the state), or "bias".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import jax.numpy as jnp


@dataclass(frozen=True)
class Param:
    axes: tuple[str, ...]   # e.g. ("gh", "in")
    role: str               # "w_in" | "w_rec" | "bias"


@dataclass(frozen=True)
class Cell:
    name: str
    gates: int                              # number of stacked blocks in "gh"
    params: dict[str, Param]                # with bias
    step: Callable                          # step(p, state, x) -> state
    state_mult: int = 1                     # state size = state_mult * hidden (LSTM: 2)
    bias_params: tuple[str, ...] = ()       # names dropped when bias=False
    reference: str = ""                     # paper / torch class it follows
    parallel: Callable | None = None        # optional parallel-scan form over a whole sequence

    def param_specs(self, bias: bool = True) -> dict[str, Param]:
        return {k: v for k, v in self.params.items() if bias or k not in self.bias_params}

    def shape(self, name: str, input_dim: int, hidden: int) -> tuple[int, ...]:
        size = {"gh": self.gates * hidden, "h": hidden, "in": input_dim}
        return tuple(size[a] for a in self.params[name].axes)

    def shapes(self, input_dim: int, hidden: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
        return {k: self.shape(k, input_dim, hidden) for k in self.param_specs(bias)}

    def n_params(self, input_dim: int, hidden: int, bias: bool = True) -> int:
        total = 0
        for shp in self.shapes(input_dim, hidden, bias).values():
            n = 1
            for s in shp:
                n *= s
            total += n
        return total

    def init_state(self, hidden: int, dtype) -> jnp.ndarray:
        return jnp.zeros((self.state_mult * hidden,), dtype)

    def hidden_of(self, state: jnp.ndarray, hidden: int) -> jnp.ndarray:
        """The part of the state the readout sees (LSTM: h, not c)."""
        return state[..., :hidden]


def matvec(w: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """w @ v written as multiply-and-sum. Under vmap over models and sequences this becomes one
    fused elementwise loop instead of thousands of tiny batched matrix products, which is what
    makes populations of small cells fast on a CPU (see benchmarks/)."""
    if _TRAILING:
        return _matvec_trailing(w, v)
    if _MODE == "dot":
        return w @ v
    return jnp.sum(w * v, axis=-1)


import os as _os
_MODE = _os.environ.get("RNNLAB_MATVEC", "dot")

# ---- trailing-batch tracing (used by analysis.landscape's random-draw kernel) ----------------
# Inside ``trailing_batch()`` a step is traced on arrays whose batch axes come AFTER the cell's
# own axes: vectors [n, *B], matrices [m, n, *B'] (B' broadcastable to B). matvec then becomes an
# unrolled multiply-add over n: pure elementwise code that XLA fuses into one vectorised loop
# with the batch axes minor. Cells that use ``linear``/``matvec`` and split/concatenate along
# axis 0 work unchanged; callers must check the result against the vmapped step.
_TRAILING = False


_TRAILING_HOOK = None


def _matvec_trailing(w, v):
    if _TRAILING_HOOK is not None:
        return _TRAILING_HOOK(_matvec_unrolled, w, v)
    return _matvec_unrolled(w, v)


def _matvec_unrolled(w, v):
    out = w[:, 0] * v[0]
    for j in range(1, v.shape[0]):
        out = out + w[:, j] * v[j]
    return out


class trailing_batch:
    """Context manager: trace cell steps with trailing batch axes (see above). ``hook(f, w, v)``,
    if given, computes every matvec (e.g. to place some of them outside a fusion)."""

    def __init__(self, hook=None):
        self.hook = hook

    def __enter__(self):
        global _TRAILING, _TRAILING_HOOK
        self._prev = (_TRAILING, _TRAILING_HOOK)
        _TRAILING, _TRAILING_HOOK = True, self.hook

    def __exit__(self, *exc):
        global _TRAILING, _TRAILING_HOOK
        _TRAILING, _TRAILING_HOOK = self._prev


def linear(p: dict, w: str, b: str | None, v: jnp.ndarray) -> jnp.ndarray:
    """w @ v (+ b if the model has that bias)."""
    out = matvec(p[w], v)
    if b is not None and b in p:
        out = out + p[b]
    return out
