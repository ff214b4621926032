"""UGRNN, the "update gate RNN" of Collins, Sohl-Dickstein & Sussillo, *Capacity and
Trainability in Recurrent Neural Networks* (ICLR 2017), eqs. for the UGRNN:

    c = tanh(W_cx x + W_ch h + b_c)        candidate
    g = sigmoid(W_gx x + W_gh h + b_g)     update gate
    h = g * h + (1 - g) * c

Gate blocks in W_ih / W_hh: (c, g).
"""
import jax
import jax.numpy as jnp

from .base import Cell, Param, linear

_PARAMS = {
    "W_ih": Param(("gh", "in"), "w_in"),
    "W_hh": Param(("gh", "h"), "w_rec"),
    "b_ih": Param(("gh",), "bias"),
    "b_hh": Param(("gh",), "bias"),
}


def ugrnn_step(p, h, x):
    pre = linear(p, "W_ih", "b_ih", x) + linear(p, "W_hh", "b_hh", h)
    c_pre, g_pre = jnp.split(pre, 2)
    c = jnp.tanh(c_pre)
    g = jax.nn.sigmoid(g_pre)
    return g * h + (1.0 - g) * c


UGRNN = Cell("ugrnn", 2, _PARAMS, ugrnn_step, bias_params=("b_ih", "b_hh"),
             reference="Collins, Sohl-Dickstein & Sussillo, ICLR 2017")
