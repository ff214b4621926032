"""Vanilla recurrent cells.

rnn-tanh    : Mehta eq. (1), identical to torch.nn.RNN(nonlinearity="tanh").
rnn-sigmoid : Sterin et al. eq. (1), h = sigmoid(U x + W h [+ b]).
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


def _step(act):
    def step(p, h, x):
        return act(linear(p, "W_ih", "b_ih", x) + linear(p, "W_hh", "b_hh", h))
    return step


RNN_TANH = Cell("rnn-tanh", 1, _PARAMS, _step(jnp.tanh), bias_params=("b_ih", "b_hh"),
                reference="Mehta eq. (1); torch.nn.RNN")
RNN_SIGMOID = Cell("rnn-sigmoid", 1, _PARAMS, _step(jax.nn.sigmoid), bias_params=("b_ih", "b_hh"),
                   reference="Sterin et al. eq. (1)")
