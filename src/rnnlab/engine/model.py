"""A model = input (learned embedding or one-hot) -> cell -> linear readout at every step.

Everything here is written for ONE model and ONE sequence; populations come from ``jax.vmap``
over a leading model axis (see :mod:`rnnlab.engine.population`).

Parameter tree of one model::

    {"emb": [vocab, input_dim]            (only with a learned embedding),
     "cell": {name: array} as the cell declares,
     "out": {"W": [n_outputs, hidden], "b": [n_outputs]}}
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .. import cells
from .._jaxcfg import x64
from ..cells import init as inits
from ..errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    cell: str = "gru"
    vocab: int = 10
    n_outputs: int = 2
    embed: bool = True          # learned embedding (Mehta) or one-hot input (Sterin)
    bias: bool = True           # cell biases
    out_bias: bool = True       # readout bias
    init: str = "torch"         # cells.init.SCHEMES
    dtype: str = "float32"

    def __post_init__(self):
        cells.get(self.cell)
        inits.check_scheme(self.init)
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype: must be float32 or float64, got {self.dtype!r}")

    @property
    def jdtype(self):
        return jnp.float64 if self.dtype == "float64" else jnp.float32

    @property
    def cell_def(self) -> cells.Cell:
        return cells.get(self.cell)

    def to_dict(self) -> dict:
        return asdict(self)

    def input_size(self, input_dim: int) -> int:
        return input_dim if self.embed else self.vocab

    def n_params(self, input_dim: int, hidden: int) -> int:
        e = self.input_size(input_dim)
        n = self.cell_def.n_params(e, hidden, self.bias)
        n += self.n_outputs * hidden + (self.n_outputs if self.out_bias else 0)
        if self.embed:
            n += self.vocab * input_dim
        return n


#: sanity limits: a size or a model beyond these is a typo, refused before anything is allocated
MAX_SIZE = 10**7
MAX_PARAMS_PER_MODEL = 10**7


def check_size(field: str, value, limit: int = MAX_SIZE) -> int:
    try:
        ok = int(value) == value and int(value) >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok or isinstance(value, bool):
        raise ConfigError(f"{field}: must be a positive integer, got {value!r}")
    if int(value) > limit:
        raise ConfigError(f"{field}: {int(value)} is too large (at most {limit})")
    return int(value)


def check_model_size(spec: "ModelSpec", input_dim: int, hidden: int,
                     limit: int = MAX_PARAMS_PER_MODEL) -> int:
    """The parameter count of one model; ConfigError naming `hidden` if it exceeds `limit`."""
    n = spec.n_params(int(input_dim), int(hidden))
    if n > limit:
        field = "input" if spec.n_params(int(input_dim), 1) > limit else "hidden"
        raise ConfigError(f"{field}: a {spec.cell} model with input {int(input_dim)} and hidden "
                          f"{int(hidden)} has {n:,} parameters, more than the limit {limit:,}")
    return n


def param_axes(spec: ModelSpec) -> dict:
    """Symbolic axes of every tensor (same tree as the parameters): drives padding and masks."""
    cell = spec.cell_def
    tree = {"cell": {k: p.axes for k, p in cell.param_specs(spec.bias).items()},
            "out": {"W": ("out", "h")}}
    if spec.out_bias:
        tree["out"]["b"] = ("out",)
    if spec.embed:
        tree["emb"] = ("vocab", "in")
    return tree


@x64
def init_params(spec: ModelSpec, key, input_dim: int, hidden: int) -> dict:
    """One model at its own sizes. Depends only on (key, sizes, spec)."""
    cell, dt = spec.cell_def, spec.jdtype
    e = spec.input_size(input_dim)
    fan = {"in": e, "h": hidden}
    p: dict = {"cell": {}, "out": {}}
    for i, (name, prm) in enumerate(sorted(cell.param_specs(spec.bias).items())):
        shape = cell.shape(name, e, hidden)
        p["cell"][name] = inits.sample(jax.random.fold_in(key, i), shape, prm.role, spec.init,
                                       fan[prm.axes[-1]] if prm.role != "bias" else hidden, hidden, dt)
    p["out"]["W"] = inits.sample(jax.random.fold_in(key, 100), (spec.n_outputs, hidden), "out_w",
                                 spec.init, hidden, hidden, dt)
    if spec.out_bias:
        p["out"]["b"] = inits.sample(jax.random.fold_in(key, 101), (spec.n_outputs,), "out_b",
                                     spec.init, hidden, hidden, dt)
    if spec.embed:
        p["emb"] = inits.sample(jax.random.fold_in(key, 102), (spec.vocab, input_dim), "emb",
                                spec.init, input_dim, hidden, dt)
    return p


def init_params_np(spec: ModelSpec, seed: int, input_dim: int, hidden: int) -> dict:
    """One model at its own sizes, drawn with NumPy (float64, cast later): what populations use.
    Tensor j of model `seed` comes from the stream default_rng([seed, j]); nothing depends on
    the population the model sits in."""
    cell = spec.cell_def
    e = spec.input_size(input_dim)
    fan = {"in": e, "h": hidden}
    rng = lambda j: np.random.default_rng([int(seed), j])  # noqa: E731
    p: dict = {"cell": {}, "out": {}}
    for i, (name, prm) in enumerate(sorted(cell.param_specs(spec.bias).items())):
        p["cell"][name] = inits.sample_np(rng(i), cell.shape(name, e, hidden), prm.role, spec.init,
                                          fan[prm.axes[-1]] if prm.role != "bias" else hidden, hidden)
    p["out"]["W"] = inits.sample_np(rng(100), (spec.n_outputs, hidden), "out_w", spec.init, hidden, hidden)
    if spec.out_bias:
        p["out"]["b"] = inits.sample_np(rng(101), (spec.n_outputs,), "out_b", spec.init, hidden, hidden)
    if spec.embed:
        p["emb"] = inits.sample_np(rng(102), (spec.vocab, input_dim), "emb", spec.init, input_dim, hidden)
    return p


def _axis_sizes(spec: ModelSpec, input_dim: int, hidden: int) -> dict:
    return {"gh": spec.cell_def.gates * hidden, "h": hidden, "in": spec.input_size(input_dim),
            "out": spec.n_outputs, "vocab": spec.vocab}


def axis_mask(spec: ModelSpec, axis: str, input_dim: int, hidden: int, emax: int, hmax: int):
    """1/0 vector along one symbolic axis at padded size: which entries belong to the model."""
    if axis == "h":
        return (np.arange(hmax) < hidden).astype(np.float64)
    if axis == "gh":
        return np.tile((np.arange(hmax) < hidden).astype(np.float64), spec.cell_def.gates)
    if axis == "in":
        return (np.arange(spec.input_size(emax)) < spec.input_size(input_dim)).astype(np.float64)
    n = _axis_sizes(spec, emax, hmax)[axis]
    return np.ones((n,), np.float64)


def mask_for(spec: ModelSpec, input_dim: int, hidden: int, emax: int, hmax: int) -> dict:
    """Tree of 0/1 NumPy arrays at padded shapes (outer product of the per-axis masks)."""
    def one(axes):
        m = None
        for a in axes:
            v = axis_mask(spec, a, input_dim, hidden, emax, hmax)
            m = v if m is None else m[..., None] * v
        return m
    return jax.tree_util.tree_map(one, param_axes(spec), is_leaf=lambda x: isinstance(x, tuple))


def pad_params(spec: ModelSpec, p: dict, input_dim: int, hidden: int, emax: int, hmax: int) -> dict:
    """Zero-pad one model's tensors to the population's (emax, hmax) layout. Gate blocks are
    padded block by block so that block g of the padded tensor holds block g of the model."""
    axes = param_axes(spec)
    small = _axis_sizes(spec, input_dim, hidden)
    big = _axis_sizes(spec, emax, hmax)
    gates = spec.cell_def.gates

    def pad(x, ax):
        for d, a in enumerate(ax):
            if small[a] == big[a]:
                continue
            if a == "gh":
                blocks = np.split(x, gates, axis=d)
                widths = [(0, 0)] * x.ndim
                widths[d] = (0, hmax - hidden)
                x = np.concatenate([np.pad(b, widths) for b in blocks], axis=d)
            else:
                widths = [(0, 0)] * x.ndim
                widths[d] = (0, big[a] - small[a])
                x = np.pad(x, widths)
        return x
    p = jax.tree_util.tree_map(np.asarray, p)
    return jax.tree_util.tree_map(pad, p, axes, is_leaf=lambda x: isinstance(x, tuple))


def unpad_params(spec: ModelSpec, p: dict, input_dim: int, hidden: int) -> dict:
    """Inverse of :func:`pad_params` for one model (returns NumPy arrays)."""
    axes = param_axes(spec)
    small = _axis_sizes(spec, input_dim, hidden)
    gates = spec.cell_def.gates

    def cut(x, ax):
        for d, a in enumerate(ax):
            if a == "gh":
                hmax = x.shape[d] // gates
                idx = np.concatenate([np.arange(g * hmax, g * hmax + hidden) for g in range(gates)])
                x = np.take(x, idx, axis=d)
            else:
                x = np.take(x, np.arange(small[a]), axis=d)
        return x
    p = jax.tree_util.tree_map(np.asarray, p)
    return jax.tree_util.tree_map(cut, p, axes, is_leaf=lambda x: isinstance(x, tuple))


def _resize_axis(spec: ModelSpec, x, d: int, a: str, src: dict, dst: dict):
    """Axis d (symbolic axis a) of x from the padded sizes `src` to `dst` (axis -> length): cut
    the tail, or zero-pad it; a gate-stacked axis ("gh") is resized block by block."""
    if src[a] == dst[a]:
        return x
    xp = np if isinstance(x, np.ndarray) else jnp     # host trees stay on the host (no compiles)
    gates = spec.cell_def.gates
    if a == "gh":
        blocks = xp.split(x, gates, axis=d)
        return xp.concatenate([_resize_axis(spec, b, d, "h", src, dst) for b in blocks], axis=d)
    if dst[a] < src[a]:
        return x[(slice(None),) * d + (slice(0, dst[a]),)]
    widths = [(0, 0)] * x.ndim
    widths[d] = (0, dst[a] - src[a])
    return xp.pad(x, widths)


def repad(spec: ModelSpec, tree, emax: int, hmax: int, emax2: int, hmax2: int):
    """A population tree (parameters, masks or Adam moments; leading model axis) from the padded
    layout (emax, hmax) to (emax2, hmax2). Shrinking is exact when every model in the tree fits
    (its padded entries are zeros and are cut); growing pads zeros, so a shrink then a grow gives
    the original tree back."""
    if (emax, hmax) == (emax2, hmax2):
        return tree
    src, dst = _axis_sizes(spec, emax, hmax), _axis_sizes(spec, emax2, hmax2)

    def one(x, ax):
        for d, a in enumerate(ax):
            x = _resize_axis(spec, x, d + 1, a, src, dst)
        return x
    return jax.tree_util.tree_map(one, tree, param_axes(spec), is_leaf=lambda x: isinstance(x, tuple))


def embed_inputs(spec: ModelSpec, p: dict, tokens: jnp.ndarray) -> jnp.ndarray:
    if spec.embed:
        return p["emb"][tokens]
    return jax.nn.one_hot(tokens, spec.vocab, dtype=spec.jdtype)


def run_states(spec: ModelSpec, p: dict, x: jnp.ndarray, length, hmax: int) -> jnp.ndarray:
    """States [T, state] of one model on one input sequence x [T, in]; positions >= length keep
    the last valid state (so the final row is the state after the whole sequence). A cell with
    a parallel form (minGRU: a linear recurrence) computes the whole sequence with it, an
    associative scan, instead of stepping; the states are the same."""
    cell = spec.cell_def
    if cell.parallel is not None:
        return cell.parallel(p["cell"], x, jnp.arange(x.shape[0]) < length)
    s0 = cell.init_state(hmax, spec.jdtype)

    def body(s, inp):
        xt, t = inp
        s_new = cell.step(p["cell"], s, xt)
        s = jnp.where(t < length, s_new, s)
        return s, s
    _, states = jax.lax.scan(body, s0, (x, jnp.arange(x.shape[0])))
    return states


def readout(spec: ModelSpec, p: dict, h: jnp.ndarray) -> jnp.ndarray:
    y = h @ p["out"]["W"].T
    if spec.out_bias:
        y = y + p["out"]["b"]
    return y


def forward(spec: ModelSpec, p: dict, tokens: jnp.ndarray, length, hmax: int):
    """(outputs [T, n_outputs], states [T, state]) of one model on one token sequence."""
    states = run_states(spec, p, embed_inputs(spec, p, tokens), length, hmax)
    return readout(spec, p, spec.cell_def.hidden_of(states, hmax)), states


# ----------------------------------------------------------------------------- training fast path
#
# What the population trainer and evaluator run (benchmarks/train_population.py measures it).
# Same arithmetic as `forward`, organised for speed:
#  * a split cell's input projection depends on the token alone, so it is computed once per
#    vocabulary entry (a [vocab, xproj] table: W_ih e_v + b_ih) and gathered, instead of a
#    matrix product per position and sequence inside the recurrence;
#  * the readout is taken only at the positions that are scored (static), e.g. the last
#    position of a classification task, instead of at every step.


def input_table(spec: ModelSpec, p: dict) -> jnp.ndarray:
    """[vocab, xproj]: a split cell's input projection of every input token."""
    x = p["emb"] if spec.embed else jnp.eye(spec.vocab, dtype=spec.jdtype)
    return jax.vmap(spec.cell_def.input_proj, in_axes=(None, 0))(p["cell"], x)


def token_states(spec: ModelSpec, p: dict, tokens: jnp.ndarray, length, hmax: int,
                 table: jnp.ndarray | None = None) -> jnp.ndarray:
    """States [T, state] of one model on one token sequence, like ``run_states(embed_inputs())``
    (positions >= length keep the last valid state; length None: the sequence fills all T
    positions, which saves the per-step select); a split cell reads its input projections from
    `table` (default: :func:`input_table`)."""
    cell = spec.cell_def
    n = tokens.shape[0]
    if not cell.split:
        return run_states(spec, p, embed_inputs(spec, p, tokens), n if length is None else length, hmax)
    xp = (input_table(spec, p) if table is None else table)[tokens]          # [T, xproj]
    s0 = cell.init_state(hmax, spec.jdtype)

    def body(s, inp):
        xt, t = inp
        s_new = cell.step_proj(p["cell"], s, xt)
        s = s_new if length is None else jnp.where(t < length, s_new, s)
        return s, s
    _, states = jax.lax.scan(body, s0, (xp, jnp.arange(n)))
    return states


def outputs_at(spec: ModelSpec, p: dict, tokens: jnp.ndarray, length, hmax: int,
               positions: tuple | None = None, table: jnp.ndarray | None = None) -> jnp.ndarray:
    """Outputs [P, n_outputs] of one model on one token sequence at the static `positions`
    (all T positions when None)."""
    states = token_states(spec, p, tokens, length, hmax, table)
    if positions is not None:
        states = states[np.asarray(positions)] if not _is_range(positions) else \
            states[positions[0]:positions[-1] + 1]
    return readout(spec, p, spec.cell_def.hidden_of(states, hmax))


def _is_range(positions) -> bool:
    return len(positions) > 0 and tuple(positions) == tuple(range(positions[0], positions[-1] + 1))


def scored_positions(target_mask) -> tuple:
    """The static tuple of positions where any sequence is scored (target_mask != 0)."""
    return tuple(int(t) for t in np.flatnonzero(np.asarray(target_mask).any(axis=0)))


def full_length(tokens, lengths) -> bool:
    """Whether every sequence fills all T positions (static: lets the recurrence skip the
    per-step select that freezes the state after a sequence's end)."""
    return bool(np.all(np.asarray(lengths) == np.asarray(tokens).shape[1]))
