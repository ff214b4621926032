"""LSTM exactly as torch.nn.LSTM (gate blocks i, f, g, o). State = [h, c]."""
import jax
import jax.numpy as jnp

from .base import Cell, Param, linear

_PARAMS = {
    "W_ih": Param(("gh", "in"), "w_in"),
    "W_hh": Param(("gh", "h"), "w_rec"),
    "b_ih": Param(("gh",), "bias"),
    "b_hh": Param(("gh",), "bias"),
}


def lstm_step(p, state, x):
    h, c = jnp.split(state, 2)
    g = linear(p, "W_ih", "b_ih", x) + linear(p, "W_hh", "b_hh", h)
    i, f, gg, o = jnp.split(g, 4)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return jnp.concatenate([h, c])


LSTM = Cell("lstm", 4, _PARAMS, lstm_step, state_mult=2, bias_params=("b_ih", "b_hh"),
            reference="Hochreiter & Schmidhuber 1997; torch.nn.LSTM")
