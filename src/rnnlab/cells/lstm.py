"""LSTM exactly as torch.nn.LSTM (gate blocks i, f, g, o). State = [h, c]."""
import jax
import jax.numpy as jnp

from .base import Cell, Param, input_linear, linear, split_step

_PARAMS = {
    "W_ih": Param(("gh", "in"), "w_in"),
    "W_hh": Param(("gh", "h"), "w_rec"),
    "b_ih": Param(("gh",), "bias"),
    "b_hh": Param(("gh",), "bias"),
}


def lstm_proj(p, state, gi):
    """The recurrent part of a torch LSTM step; gi = W_ih x + b_ih."""
    h, c = jnp.split(state, 2)
    g = gi + linear(p, "W_hh", "b_hh", h)
    i, f, gg, o = jnp.split(g, 4)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return jnp.concatenate([h, c])


lstm_step = split_step(input_linear, lstm_proj)

LSTM = Cell("lstm", 4, _PARAMS, lstm_step, state_mult=2, bias_params=("b_ih", "b_hh"),
            reference="Hochreiter & Schmidhuber 1997; torch.nn.LSTM", input_proj=input_linear,
            step_proj=lstm_proj)
