"""Vanilla recurrent cells.

rnn-tanh    : Mehta eq. (1), identical to torch.nn.RNN(nonlinearity="tanh").
rnn-sigmoid : Sterin et al. eq. (1), h = sigmoid(U x + W h [+ b]).
"""
import jax
import jax.numpy as jnp

from .base import Cell, Param, input_linear, linear, split_step

_PARAMS = {
    "W_ih": Param(("gh", "in"), "w_in"),
    "W_hh": Param(("gh", "h"), "w_rec"),
    "b_ih": Param(("gh",), "bias"),
    "b_hh": Param(("gh",), "bias"),
}


def _proj(act):
    def step_proj(p, h, xi):
        return act(xi + linear(p, "W_hh", "b_hh", h))
    return step_proj


_tanh_proj, _sigmoid_proj = _proj(jnp.tanh), _proj(jax.nn.sigmoid)

RNN_TANH = Cell("rnn-tanh", 1, _PARAMS, split_step(input_linear, _tanh_proj), bias_params=("b_ih", "b_hh"),
                reference="Mehta eq. (1); torch.nn.RNN", input_proj=input_linear, step_proj=_tanh_proj)
RNN_SIGMOID = Cell("rnn-sigmoid", 1, _PARAMS, split_step(input_linear, _sigmoid_proj),
                   bias_params=("b_ih", "b_hh"), reference="Sterin et al. eq. (1)",
                   input_proj=input_linear, step_proj=_sigmoid_proj)
