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

import threading
from dataclasses import dataclass
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
    # optional parallel form over a whole sequence: parallel(p, xs [T, in], valid [T] bool) ->
    # states [T, state], starting from the zero state (h0 = 0, as everywhere here) and carrying
    # the state where valid is False; the engine uses it instead of stepping (same states)
    parallel: Callable | None = None
    # Optional split of `step` into an input part and a recurrent part, with
    # step(p, s, x) == step_proj(p, s, input_proj(p, x)) exactly. The input part depends on x
    # alone, so the engine computes it once per vocabulary entry (a [vocab, gates*hidden]
    # table) instead of once per position and sequence. Cells without it use `step`.
    input_proj: Callable | None = None      # input_proj(p, x) -> xproj
    step_proj: Callable | None = None       # step_proj(p, state, xproj) -> state

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

    @property
    def split(self) -> bool:
        """Whether the engine may hoist the input projection out of the recurrence."""
        return self.input_proj is not None and self.step_proj is not None


def split_step(input_proj: Callable, step_proj: Callable) -> Callable:
    """The plain step of a split cell: step_proj after input_proj (the same arithmetic)."""
    def step(p, state, x):
        return step_proj(p, state, input_proj(p, x))
    return step


def matvec(w: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """w @ v for one model (w [m, n], v [n]). Under vmap over models and sequences XLA batches
    it into one dot_general per step, which measured fastest for training populations
    (benchmarks/train_population.py; multiply-and-sum forms were 1.2-4x slower there). Inside
    ``trailing_batch()`` it is an unrolled multiply-add instead (see below)."""
    if _trailing()[0]:
        return _matvec_trailing(w, v)
    return w @ v

# ---- trailing-batch tracing (used by analysis.landscape's random-draw kernel) ----------------
# Inside ``trailing_batch()`` a step is traced on arrays whose batch axes come AFTER the cell's
# own axes: vectors [n, *B], matrices [m, n, *B'] (B' broadcastable to B). matvec then becomes an
# unrolled multiply-add over n: pure elementwise code that XLA fuses into one vectorised loop
# with the batch axes minor. Cells that use ``linear``/``matvec`` and split/concatenate along
# axis 0 work unchanged; callers must check the result against the vmapped step.
# The switch is per thread: shards traced at the same time in other threads are not affected.
_TLS = threading.local()


def _trailing() -> tuple[bool, object]:
    return getattr(_TLS, "on", False), getattr(_TLS, "hook", None)


def _matvec_trailing(w, v):
    hook = _trailing()[1]
    if hook is not None:
        return hook(_matvec_unrolled, w, v)
    return _matvec_unrolled(w, v)


def _matvec_unrolled(w, v):
    out = w[:, 0] * v[0]
    for j in range(1, v.shape[0]):
        out = out + w[:, j] * v[j]
    return out


class trailing_batch:
    """Context manager: trace cell steps with trailing batch axes (see above), in this thread.
    ``hook(f, w, v)``, if given, computes every matvec (e.g. to place some of them outside a
    fusion)."""

    def __init__(self, hook=None):
        self.hook = hook

    def __enter__(self):
        self._prev = _trailing()
        _TLS.on, _TLS.hook = True, self.hook

    def __exit__(self, *exc):
        _TLS.on, _TLS.hook = self._prev


def linear(p: dict, w: str, b: str | None, v: jnp.ndarray) -> jnp.ndarray:
    """w @ v (+ b if the model has that bias)."""
    out = matvec(p[w], v)
    if b is not None and b in p:
        out = out + p[b]
    return out


def input_linear(p: dict, x: jnp.ndarray) -> jnp.ndarray:
    """The input projection every built-in cell starts with: W_ih x (+ b_ih)."""
    return linear(p, "W_ih", "b_ih", x)
