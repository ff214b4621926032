"""Fixed and slow points of a recurrent cell under a constant input (Sussillo & Barak 2013,
*Opening the black box: low-dimensional dynamics in high-dimensional recurrent neural networks*).

For a cell step F(h, x) and a constant input x, every start h0 is moved downhill on the speed

    q(h) = 0.5 * |F(h, x) - h|^2

by a few hundred Adam steps followed by a few damped Newton steps on F(h) - h = 0 (a Newton
step is kept only where it lowers q, so it refines fixed points without ever making a start
worse). Everything (optimisation, Jacobians, the region the model visits) runs in ONE compiled
call, vmapped over starts and over a leading batch of (model, input) problems
(:func:`find_fixed_points_batch`), in float64.

The minima are then classified:

* ``fixed`` if q < ``tol`` (|F(h) - h| < sqrt(2 tol)),
* ``slow``  if q < ``slow_tol`` (a slow point: a region where the state barely moves),

deduplicated greedily in order of increasing q (two candidates closer than ``eps`` in state
space are one point; ``n_hits`` counts the starts that ended there), and linearised: the
eigenvalues of the Jacobian dF/dh (``jax.jacfwd``) give the local stability of the discrete
map: ``stable`` if max |lambda| < 1 - margin, ``unstable`` if > 1 + margin, ``marginal`` in
between (a line attractor has an eigenvalue at 1).

Any registered cell works (the state may be larger than the hidden size: LSTM's [h, c]).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from .. import cells as cell_registry
from .._jaxcfg import jit, x64

KINDS = ("fixed", "slow")
STABILITY = ("stable", "marginal", "unstable")
COLUMNS = ["problem", "point", "kind", "stability", "q", "speed", "residual", "max_abs_eig",
           "n_hits", "state", "eig_re", "eig_im"]


def _f64(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


@partial(jit, static_argnames=("step", "steps", "newton_steps", "n_iterate", "iterate_steps"))
def _solve(step, params, x, starts, lr, steps: int, newton_steps: int, n_iterate: int, iterate_steps: int):
    """The one compiled call. params: tree with a leading batch axis B; x [B, in];
    starts [B, S, state]. Returns h [B, S, state] (minimum reached from each start), q [B, S],
    jac [B, S, state, state] (dF/dh there) and the box (lo, hi) [B, state] of the states reached
    by iterating F from the first n_iterate starts for iterate_steps steps."""
    opt = optax.adam(lr)

    def one_problem(p, xc, h0s):
        f = lambda v: step(p, v, xc)  # noqa: E731

        def q_of(h):
            d = f(h) - h
            return 0.5 * jnp.sum(d * d)

        def one_start(h0):
            def adam_body(carry, _):
                h, o, best_h, best_q = carry
                q, g = jax.value_and_grad(q_of)(h)
                better = q < best_q
                best_h = jnp.where(better, h, best_h)
                best_q = jnp.where(better, q, best_q)
                upd, o = opt.update(g, o)
                return (h + upd, o, best_h, best_q), None

            q0 = q_of(h0)
            (h, _, best_h, best_q), _ = jax.lax.scan(
                adam_body, (h0, opt.init(h0), h0, q0), None, length=steps)
            qh = q_of(h)
            h = jnp.where(qh < best_q, h, best_h)
            q = jnp.minimum(qh, best_q)

            def newton_body(carry, _):
                h, q = carry
                r = f(h) - h
                jac = jax.jacfwd(f)(h) - jnp.eye(h.shape[0], dtype=h.dtype)
                dh = jnp.linalg.solve(jac, -r)
                # damped: try the full step and half of it; keep the better one if it lowers q
                cands = jnp.stack([h + dh, h + 0.5 * dh])
                qs = jax.vmap(q_of)(cands)
                qs = jnp.where(jnp.isfinite(qs), qs, jnp.inf)
                k = jnp.argmin(qs)
                ok = qs[k] < q
                return (jnp.where(ok, cands[k], h), jnp.where(ok, qs[k], q)), None

            if newton_steps > 0:
                (h, q), _ = jax.lax.scan(newton_body, (h, q), None, length=newton_steps)
            return h, q, jax.jacfwd(f)(h)

        h, q, jac = jax.vmap(one_start)(h0s)
        if iterate_steps > 0:
            def it_body(carry, _):
                hs, lo, hi = carry
                hs = jax.vmap(f)(hs)
                return (hs, jnp.minimum(lo, hs.min(0)), jnp.maximum(hi, hs.max(0))), None
            hs0 = h0s[:n_iterate]
            (_, lo, hi), _ = jax.lax.scan(it_body, (hs0, hs0.min(0), hs0.max(0)), None,
                                          length=iterate_steps)
        else:
            lo = hi = jnp.full(h0s.shape[-1:], jnp.nan, h0s.dtype)
        return h, q, jac, lo, hi

    return jax.vmap(one_problem)(params, x, starts)


@x64
def residuals(cell, params_cell, x_const, points) -> np.ndarray:
    """|F(h, x) - h| at each point, evaluated afresh (no jit, separate from the optimiser):
    params with a leading axis K, x_const [K, in], points [K, state]."""
    cell = cell_registry.get(cell) if isinstance(cell, str) else cell
    h = jnp.asarray(points, jnp.float64)
    fh = jax.vmap(lambda p, xc, v: cell.step(p, v, xc))(_f64(params_cell), jnp.asarray(x_const, jnp.float64), h)
    return np.linalg.norm(np.asarray(fh) - np.asarray(h), axis=1)


def dedupe(points: np.ndarray, q: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy deduplication in order of increasing q: (indices of the kept points, number of
    candidates assigned to each kept point)."""
    order = np.argsort(q, kind="stable")
    kept: list[int] = []
    hits: list[int] = []
    for i in order:
        if kept:
            d = np.linalg.norm(points[kept] - points[i], axis=1)
            j = int(np.argmin(d))
            if d[j] < eps:
                hits[j] += 1
                continue
        kept.append(int(i))
        hits.append(1)
    return np.asarray(kept, int), np.asarray(hits, int)


def classify_stability(max_abs_eig, margin: float = 1e-3):
    m = np.asarray(max_abs_eig, float)
    return np.where(m < 1.0 - margin, "stable", np.where(m > 1.0 + margin, "unstable", "marginal"))


@x64
def find_fixed_points_batch(cell, params_cell, x_const, starts, *, steps: int = 300, lr: float = 1e-2,
                            newton_steps: int = 10, tol: float = 1e-12, slow_tol: float = 1e-6,
                            eps: float = 1e-2, margin: float = 1e-3, region=None,
                            region_margin: float = 0.05, iterate_steps: int = 0,
                            n_iterate: int = 16) -> pd.DataFrame:
    """Fixed/slow points of B problems at once (one compiled call).

    cell: a :class:`rnnlab.cells.Cell` or its name; params_cell: the cell's parameter tree with
    a leading axis B (one model's own sizes, stacked); x_const [B, in]; starts [B, S, state].

    region: optional states [B, K, state] (e.g. the states the model visits on task sequences);
    with iterate_steps > 0 the states reached by iterating h <- F(h, x) from the first n_iterate
    starts are added to them. Minima outside their bounding box, widened by region_margin of
    its width on each side, are dropped: a saturated gate makes F(h) = h numerically far outside
    the states a model ever reaches, which is no fixed point of the dynamics it runs.

    Returns one row per deduplicated point: problem (0..B-1), point (index within the problem),
    kind, stability, q, speed (= sqrt(2 q), from the optimiser), residual (|F(h)-h| evaluated
    afresh outside the compiled optimiser), max_abs_eig, n_hits, state (list), eig_re / eig_im
    (lists)."""
    cell = cell_registry.get(cell) if isinstance(cell, str) else cell
    params = _f64(params_cell)
    x = jnp.asarray(x_const, jnp.float64)
    s0 = jnp.asarray(starts, jnp.float64)
    if s0.ndim != 3 or x.ndim != 2 or x.shape[0] != s0.shape[0]:
        raise ValueError(f"expected x_const [B, in] and starts [B, S, state], got {x.shape} and {s0.shape}")
    n_it = max(1, min(int(n_iterate), s0.shape[1]))
    h, q, jac, it_lo, it_hi = (np.asarray(a) for a in _solve(
        cell.step, params, x, s0, float(lr), int(steps), int(newton_steps), n_it, int(iterate_steps)))

    if region is not None:
        reg = np.asarray(region, float)
        lo, hi = reg.min(axis=1), reg.max(axis=1)
        if iterate_steps > 0:
            lo, hi = np.minimum(lo, it_lo), np.maximum(hi, it_hi)
        widen = region_margin * (hi - lo)
        lo, hi = lo - widen, hi + widen

    sel_b, sel_i, sel_hits = [], [], []
    for b in range(h.shape[0]):
        ok = np.isfinite(q[b]) & (q[b] < slow_tol) & np.all(np.isfinite(h[b]), axis=1)
        if region is not None:
            ok &= np.all((h[b] >= lo[b]) & (h[b] <= hi[b]), axis=1)
        idx = np.flatnonzero(ok)
        if not len(idx):
            continue
        keep, hits = dedupe(h[b][idx], q[b][idx], eps)
        sel_b += [b] * len(keep)
        sel_i.append(idx[keep])
        sel_hits.append(hits)
    if not sel_b:
        return pd.DataFrame(columns=COLUMNS)
    b_idx = np.asarray(sel_b)
    s_idx = np.concatenate(sel_i)
    pts, qs, jk = h[b_idx, s_idx], q[b_idx, s_idx], jac[b_idx, s_idx]
    hits = np.concatenate(sel_hits)
    res = residuals(cell, jax.tree_util.tree_map(lambda a: a[b_idx], params), x[b_idx], pts)
    eig = np.linalg.eigvals(jk)
    max_abs = np.max(np.abs(eig), axis=1)
    point = np.zeros(len(b_idx), int)
    for b in np.unique(b_idx):
        point[b_idx == b] = np.arange(int((b_idx == b).sum()))
    return pd.DataFrame({
        "problem": b_idx, "point": point,
        "kind": np.where(qs < tol, "fixed", "slow"),
        "stability": classify_stability(max_abs, margin),
        "q": qs, "speed": np.sqrt(2.0 * qs), "residual": res,
        "max_abs_eig": max_abs, "n_hits": hits,
        "state": [list(map(float, v)) for v in pts],
        "eig_re": [list(map(float, e.real)) for e in eig],
        "eig_im": [list(map(float, e.imag)) for e in eig],
    })


@x64
def find_fixed_points(cell, params_cell, x_const, starts, **kw) -> pd.DataFrame:
    """Fixed/slow points of ONE cell (its own parameter tree, no batch axis) under the constant
    input x_const [in], from starts [S, state]. Keyword arguments as
    :func:`find_fixed_points_batch`; the result has no ``problem`` column."""
    p = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], params_cell)
    x = jnp.asarray(x_const)[None]
    s = jnp.asarray(starts)[None]
    return find_fixed_points_batch(cell, p, x, s, **kw).drop(columns=["problem"])


def sample_starts(states: np.ndarray, n: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """n starts drawn from visited states [K, state] plus Gaussian noise of sd `noise`."""
    states = np.asarray(states, float).reshape(-1, states.shape[-1])
    idx = rng.integers(0, len(states), n)
    return states[idx] + noise * rng.standard_normal((n, states.shape[-1]))
