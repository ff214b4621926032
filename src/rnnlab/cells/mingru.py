"""minGRU of Feng et al. 2024, *Were RNNs All We Needed?* (arXiv:2410.01201):

    z  = sigmoid(W_z x + b_z)
    h~ = W_h x + b_h
    h  = (1 - z) * h_prev + z * h~

The gates do not read h, so h_t = a_t * h_{t-1} + b_t with a = 1 - z, b = z * h~ is a linear
recurrence: `parallel` computes a whole sequence with an associative (parallel) scan, which
gives the same states as stepping. Gate blocks in W_ih: (z, h~). No recurrent matrix.
"""
import jax
import jax.numpy as jnp

from .base import Cell, Param, linear

_PARAMS = {
    "W_ih": Param(("gh", "in"), "w_in"),
    "b_ih": Param(("gh",), "bias"),
}


def _coeffs(p, x):
    z_pre, h_tilde = jnp.split(linear(p, "W_ih", "b_ih", x), 2)
    z = jax.nn.sigmoid(z_pre)
    return 1.0 - z, z * h_tilde


def mingru_step(p, h, x):
    a, b = _coeffs(p, x)
    return a * h + b


def mingru_parallel(p, xs, valid):
    """States [T, H] for inputs xs [T, in]; where valid[t] is False the state is carried."""
    a, b = jax.vmap(lambda x: _coeffs(p, x))(xs)
    a = jnp.where(valid[:, None], a, 1.0)
    b = jnp.where(valid[:, None], b, 0.0)

    def combine(left, right):
        a1, b1 = left
        a2, b2 = right
        return a1 * a2, a2 * b1 + b2
    _, h = jax.lax.associative_scan(combine, (a, b))
    return h   # h0 = 0, so the accumulated offset is the state


MINGRU = Cell("mingru", 2, _PARAMS, mingru_step, bias_params=("b_ih",),
              reference="Feng et al. 2024, Were RNNs All We Needed?", parallel=mingru_parallel)
