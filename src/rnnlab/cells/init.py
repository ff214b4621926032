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

import math

import numpy as np

import jax
import jax.numpy as jnp

from ..errors import ConfigError

SCHEMES = ("torch", "normal", "xavier", "uniform")


def check_scheme(name: str) -> str:
    if name not in SCHEMES:
        raise ConfigError(f"init: unknown init scheme {name!r}; known: {', '.join(SCHEMES)}")
    return name


def rule(role: str, scheme: str, fan_in: int, hidden: int) -> tuple[str, float]:
    """The distribution of one tensor: ("uniform", bound) | ("normal", std) | ("zeros", 0).
    role: 'w_in' | 'w_rec' | 'bias' | 'emb' | 'out_w' | 'out_b'. Both samplers below use it."""
    if role == "emb":                       # nn.Embedding: N(0, 1) in every scheme
        return "normal", 1.0
    if scheme == "torch":
        if role in ("out_w", "out_b"):      # nn.Linear default
            return "uniform", 1.0 / math.sqrt(fan_in)
        return "uniform", 1.0 / math.sqrt(hidden)   # nn.RNN / GRU / LSTM default
    check_scheme(scheme)
    if role in ("bias", "out_b"):
        return "zeros", 0.0
    if scheme == "normal":
        return "normal", 1.0
    if scheme == "xavier":
        return "normal", 1.0 / math.sqrt(fan_in)
    return "uniform", 1.0 / math.sqrt(fan_in)


def sample(key, shape, role: str, scheme: str, fan_in: int, hidden: int, dtype) -> jnp.ndarray:
    """One tensor drawn with jax.random (for draws inside compiled code, e.g. random sweeps)."""
    kind, a = rule(role, scheme, fan_in, hidden)
    if kind == "normal":
        return a * jax.random.normal(key, shape, dtype)
    if kind == "uniform":
        return jax.random.uniform(key, shape, dtype, -a, a)
    return jnp.zeros(shape, dtype)


def sample_np(rng: np.random.Generator, shape, role: str, scheme: str, fan_in: int, hidden: int) -> np.ndarray:
    """One tensor drawn with NumPy in float64 (population initialisation: no compilation)."""
    kind, a = rule(role, scheme, fan_in, hidden)
    if kind == "normal":
        return a * rng.standard_normal(shape)
    if kind == "uniform":
        return rng.uniform(-a, a, shape)
    return np.zeros(shape)
