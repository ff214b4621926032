"""Gated recurrent units, in the two forms the papers use.

gru   : torch.nn.GRU (Mehta eqs. 3-6); gate blocks r, z, n; the reset gate scales
        (W_hn h + b_hn), i.e. it acts AFTER the recurrent matrix.
gru-s : Sterin et al. section II.B; gate blocks z, r, h; the reset gate scales h
        BEFORE the recurrent matrix: h' = tanh(U_h x + W_h (r * h)).
"""
import jax
import jax.numpy as jnp

from .base import Cell, Param, input_linear, linear, matvec, split_step

_PARAMS = {
    "W_ih": Param(("gh", "in"), "w_in"),
    "W_hh": Param(("gh", "h"), "w_rec"),
    "b_ih": Param(("gh",), "bias"),
    "b_hh": Param(("gh",), "bias"),
}


def gru_proj(p, h, gi):
    """The recurrent part of a torch GRU step; gi = W_ih x + b_ih."""
    gh = linear(p, "W_hh", "b_hh", h)
    i_r, i_z, i_n = jnp.split(gi, 3)
    h_r, h_z, h_n = jnp.split(gh, 3)
    r = jax.nn.sigmoid(i_r + h_r)
    z = jax.nn.sigmoid(i_z + h_z)
    n = jnp.tanh(i_n + r * h_n)
    return (1.0 - z) * n + z * h


def gru_s_proj(p, h, gi):
    """The recurrent part of a Sterin GRU step; gi = U x (+ b)."""
    i_z, i_r, i_h = jnp.split(gi, 3)
    W_z, W_r, W_h = jnp.split(p["W_hh"], 3)
    if "b_hh" in p:
        b_z, b_r, b_h = jnp.split(p["b_hh"], 3)
    else:
        b_z = b_r = b_h = 0.0
    z = jax.nn.sigmoid(i_z + matvec(W_z, h) + b_z)
    r = jax.nn.sigmoid(i_r + matvec(W_r, h) + b_r)
    hc = jnp.tanh(i_h + matvec(W_h, r * h) + b_h)
    return (1.0 - z) * hc + z * h


gru_step = split_step(input_linear, gru_proj)
gru_s_step = split_step(input_linear, gru_s_proj)

GRU = Cell("gru", 3, _PARAMS, gru_step, bias_params=("b_ih", "b_hh"),
           reference="Mehta eqs. (3)-(6); torch.nn.GRU", input_proj=input_linear, step_proj=gru_proj)
GRU_S = Cell("gru-s", 3, _PARAMS, gru_s_step, bias_params=("b_ih", "b_hh"),
             reference="Sterin et al. section II.B", input_proj=input_linear, step_proj=gru_s_proj)
