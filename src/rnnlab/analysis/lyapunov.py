"""Lyapunov spectrum of a population by the QR method along input-driven trajectories.

For states h_t = F(h_{t-1}, x_t) and Jacobians J_t = dF/dh, propagate an orthonormal frame
Q_t R_t = J_t Q_{t-1}; the exponents are the time averages of log|diag R_t| after a burn-in.
This is the principled form of Stérin et al.'s (l,k)-discrepancy: a largest exponent below 0
means the state forgets its past (two inputs differing at t=0 become indistinguishable at the
rate exp(lambda_1 t)).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from .. import cells as cell_registry
from .._jaxcfg import jit, x64


@x64
def spectrum(cell_name: str, p_cell: dict, xs: jnp.ndarray, burn_in: int = 50) -> jnp.ndarray:
    """Exponents (descending) of one model driven by inputs xs [T, in] (already embedded)."""
    cell = cell_registry.get(cell_name)
    hidden = p_cell["W_ih"].shape[0] // cell.gates
    s = cell.state_mult * hidden
    f = lambda h, x: cell.step(p_cell, h, x)  # noqa: E731

    def body(carry, inp):
        h, q, acc = carry
        x, t = inp
        jac = jax.jacfwd(f)(h, x)
        h = f(h, x)
        q, r = jnp.linalg.qr(jac @ q)
        logd = jnp.log(jnp.abs(jnp.diag(r)) + 1e-300)
        acc = acc + jnp.where(t >= burn_in, logd, 0.0)
        return (h, q, acc), None

    dt = xs.dtype
    init = (jnp.zeros((s,), dt), jnp.eye(s, dtype=dt), jnp.zeros((s,), dt))
    (_, _, acc), _ = jax.lax.scan(body, init, (xs, jnp.arange(xs.shape[0])))
    return jnp.sort(acc / (xs.shape[0] - burn_in))[::-1]


@x64
@partial(jit, static_argnames=("cell_name", "burn_in"))
def population_spectra(cell_name: str, p_cells: dict, xs: jnp.ndarray, burn_in: int = 50) -> jnp.ndarray:
    """Spectra [M, n_seq, state] for stacked cell parameters [M, ...] and inputs [M, n_seq, T, in]."""
    per_model = jax.vmap(lambda p, x: spectrum(cell_name, p, x, burn_in), in_axes=(None, 0))
    return jax.vmap(per_model)(p_cells, xs)
