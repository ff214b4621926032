"""Named initialisation schemes (PROTOCOLS section 1).

torch   : what Mehta used (PyTorch defaults): every cell tensor U(-1/sqrt(h), 1/sqrt(h));
          embedding N(0, 1); readout nn.Linear default U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
normal  : Sterin et al.: every weight N(0, 1), biases zero.
xavier  : N(0, 1/fan_in), biases zero.
uniform : U(-1/sqrt(fan_in), 1/sqrt(fan_in)), biases zero.

Each model's parameters depend only on (its seed, its own sizes), never on the population it
sits in, so a model padded into a population starts exactly where it starts alone.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ..errors import ConfigError

SCHEMES = ("torch", "normal", "xavier", "uniform")


def check_scheme(name: str) -> str:
    if name not in SCHEMES:
        raise ConfigError(f"init: unknown init scheme {name!r}; known: {', '.join(SCHEMES)}")
    return name


def sample(key, shape, role: str, scheme: str, fan_in: int, hidden: int, dtype) -> jnp.ndarray:
    """One tensor of a cell or readout under `scheme`. role: 'w_in' | 'w_rec' | 'bias' | 'emb' |
    'out_w' | 'out_b'."""
    if role == "emb":                       # nn.Embedding: N(0, 1) in every scheme
        return jax.random.normal(key, shape, dtype)
    if scheme == "torch":
        if role in ("out_w", "out_b"):      # nn.Linear default
            bound = 1.0 / jnp.sqrt(fan_in)
        else:                               # nn.RNN / GRU / LSTM default
            bound = 1.0 / jnp.sqrt(hidden)
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    if role in ("bias", "out_b"):
        return jnp.zeros(shape, dtype)
    if scheme == "normal":
        return jax.random.normal(key, shape, dtype)
    if scheme == "xavier":
        return jax.random.normal(key, shape, dtype) / jnp.sqrt(fan_in)
    if scheme == "uniform":
        bound = 1.0 / jnp.sqrt(fan_in)
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    raise ConfigError(f"init: unknown init scheme {scheme!r}; known: {', '.join(SCHEMES)}")
