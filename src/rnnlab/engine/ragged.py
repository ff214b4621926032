"""The ragged epoch kernel: each step's recurrence runs only as far as that step's longest
sequence, with a hand-written backward pass through time.

Why. Sterin et al.'s protocol is plain SGD on ONE string at a time: 2000 sequential updates an
epoch, up to 1000 epochs. The strings are short and ragged (embedded Reber: 8-32 symbols, mean
11, padded to 32), and the other kernels scan every step over all T padded positions: autodiff
of ``lax.scan`` needs a static trip count. Here the forward pass is a ``lax.while_loop`` that
stops at L = the longest sequence of the step (over the models of the population and the batch),
and the backward pass is a second ``while_loop`` from L-1 down to 0 that pulls the cotangent
through the cell's own step with ``jax.vjp`` (recomputing the step from the stored state), so
any cell - built in or a plugin's - runs here unchanged.

Layout: the whole epoch runs in engine.lanes' layout (arrays ``[cell axes..., batch, M]``, the
cell traced with trailing batch axes), so a step of the recurrence is a few elementwise loops.
The transposes of the input gather and of the read-out positions are a one-hot contraction and
a static stack: XLA:CPU runs a scatter-add as a loop, which cost more than the recurrence.

What it computes is what :func:`engine.train.train_epoch` computes: the same batch orders
(:func:`engine.lanes.batch_orders`), the same states (positions past a sequence's length keep its
last state), loss, gradients (of the masked parameters, times the padding mask), Adam/SGD update
and divergence freeze. tests/test_ragged.py checks the two agree to float64 rounding.

Measured (benchmarks/engine_ragged.py, one epoch of embedded Reber, 2000 strings of 8-32
symbols, padded to 32, one core): 1.7-2.5x faster than the models-first epoch for one model,
1.5-1.8x for 6, 1.1-1.3x for 10-16, and 0.75x for 20 rnn-sigmoid (k=18) models, where the lane
layout's multiply-and-reduce matvec outgrows the dot kernels: engine.train picks this kernel for
at most RAGGED_MAX_MODELS models. What is left is XLA:CPU's per-operation cost: ~2 us per
position per model-step (forward + backward), ~12 us fixed per step at one model.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._jaxcfg import jit
from ..cells import base as cb
from . import lanes
from . import model as mdl
from .population import _terms
from .protocols import Protocol


def _lane_table(spec, p):
    """[V, X, M]: a split cell's input projection of every vocabulary entry, per model."""
    return jax.vmap(lambda q: mdl.input_table(spec, q), in_axes=-1, out_axes=-1)(p)


def _lane_head(spec, loss, hmax, p, states, tg, tm, ac, w):
    """Sum over models of the weighted mean batch loss, from the states at the scored positions
    (lane layout: states [P, S, B, M], tg/tm [P, B, M], ac [P, O, B, M], w [B]); per-model
    (loss, correct, counted) as aux."""
    h = states[:, :hmax]
    out = jnp.sum(p["out"]["W"][None, :, :, None, :] * h[:, None], axis=2)            # [P, O, B, M]
    if spec.out_bias:
        out = out + p["out"]["b"][None, :, None, :]
    per, corr, cnt = jax.vmap(jax.vmap(partial(_terms, loss), in_axes=(2, 1, 1, 2)), in_axes=(3, 2, 2, 3))(
        out, tg, tm, ac)                                                                  # [M, B]
    wsum = jnp.maximum(jnp.sum(w), 1.0)
    lm = jnp.sum(per * w, axis=1) / wsum
    return jnp.sum(lm), (lm, jnp.sum(corr * w, axis=1), jnp.sum(cnt * w, axis=1))


def _grad_lanes(spec, loss, hmax, positions, lp, lm, tok, ln, tg, tm, ac, w):
    """(per-model (loss, correct, counted), gradient wrt lp) of one batch, in lane layout
    (engine.lanes): parameters [..., M], tok [T, B, M], ln [B, M], tg/tm [P, B, M],
    ac [P, O, B, M], w [B]; the cell steps are traced with trailing batch axes, so a step is a
    few elementwise loops over [S, B, M]."""
    cell = spec.cell_def
    p = jax.tree_util.tree_map(lambda a, b: a * b, lp, lm)
    table, table_vjp = jax.vjp(partial(_lane_table, spec), p)                          # [V, X, M]
    xs = lanes._gather(jnp.swapaxes(table, 0, 1), tok)                                  # [T, X, B, M]
    T, _, B, M = xs.shape
    pc = jax.tree_util.tree_map(lambda a: a[..., None, :], p["cell"])                   # [..., 1, M]
    s0 = jnp.zeros((cell.state_mult * hmax, B, M), xs.dtype)
    L = jnp.max(ln)

    def step(q, s, x):
        with cb.trailing_batch(hook=lanes._reduce_matvec):
            return cell.step_proj(q, s, x)

    def fwd(c):
        t, s, buf = c
        s = jnp.where(t < ln, step(pc, s, xs[t]), s)
        return t + 1, s, buf.at[t].set(s)
    _, s_last, buf = jax.lax.while_loop(lambda c: c[0] < L, fwd, (0, s0, jnp.zeros((T,) + s0.shape, s0.dtype)))
    late = (jnp.arange(T) >= L)[:, None, None, None]
    states = jnp.where(late, s_last[None], buf)                                         # [T, S, B, M]
    (g_head, d_pos), aux = jax.grad(partial(_lane_head, spec, loss, hmax), argnums=(0, 1), has_aux=True)(
        p, states[np.asarray(positions)] if positions else states, tg, tm, ac, w)
    if positions:      # static positions: d_states by stacking, a scatter is a loop in XLA:CPU
        at = {int(q): i for i, q in enumerate(positions)}
        zero = jnp.zeros_like(states[0])
        d_states = jnp.stack([d_pos[at[t]] if t in at else zero for t in range(T)])
    else:
        d_states = d_pos
    g0 = jnp.sum(jnp.where(late, d_states, 0.0), axis=0)

    def bwd(c):
        t, g, gpc, dxs = c
        gt = g + d_states[t]
        valid = t < ln
        s_prev = jnp.where(t > 0, buf[jnp.maximum(t - 1, 0)], s0)
        dpc, ds, dx = jax.vjp(step, pc, s_prev, xs[t])[1](jnp.where(valid, gt, 0.0))
        return t - 1, jnp.where(valid, ds, gt), jax.tree_util.tree_map(jnp.add, gpc, dpc), dxs.at[t].set(dx)
    zero_pc = jax.tree_util.tree_map(jnp.zeros_like, pc)
    _, _, g_cell, dxs = jax.lax.while_loop(lambda c: c[0] >= 0, bwd, (L - 1, g0, zero_pc, jnp.zeros_like(xs)))
    # the gather's transpose as a one-hot contraction (a scatter-add is a loop in XLA:CPU)
    onehot = (tok[:, None] == jnp.arange(table.shape[0])[None, :, None, None]).astype(dxs.dtype)   # [T, V, B, M]
    d_table = jnp.sum(onehot[:, :, None] * dxs[:, None], axis=(0, 3))                   # [V, X, M]
    g = jax.tree_util.tree_map(jnp.add, g_head, table_vjp(d_table)[0])
    g["cell"] = jax.tree_util.tree_map(lambda a, b: a + b[..., 0, :], g["cell"], g_cell)
    return aux, jax.tree_util.tree_map(lambda a, b: a * b, g, lm)


def _epoch(spec, protocol: Protocol, hmax: int, n_batches: int, params, opt_state, mask, lr, active,
           orders, data, positions=None, full_length=False):
    """One epoch of every model; arguments and results as engine.lanes' epoch (the batch orders
    [M, n_batches, B] of :func:`engine.lanes.batch_orders`), the whole epoch in lane layout
    (:func:`engine.lanes.epoch_with` around :func:`_grad_lanes`). full_length is accepted for a
    common signature (lengths are always read here)."""
    positions = tuple(positions) if positions else None
    grad = partial(_grad_lanes, spec, protocol.loss, hmax, positions)
    return lanes.epoch_with(grad, protocol, n_batches, params, opt_state, mask, lr, active, orders, data,
                            positions)


ragged_epoch = jit(_epoch, static_argnames=("spec", "protocol", "hmax", "n_batches", "positions", "full_length"),
                   cpu_options=lanes.CPU_OPTIONS)


def usable(spec, hmax: int) -> bool:
    """Cells that step (a parallel form, e.g. minGRU's scan, stays on the models-first kernel,
    which uses it) and trace in lane layout (engine.lanes.usable)."""
    return spec.cell_def.parallel is None and lanes.usable(spec, hmax)
