"""--device cpu|gpu|auto: which JAX platform computes. Must be chosen before the first
computation; 'auto' takes a CUDA GPU when JAX sees one, else the CPU."""
from __future__ import annotations

import jax

from .errors import ConfigError

DEVICES = ("auto", "cpu", "gpu")


def gpu_available() -> bool:
    try:
        return len(jax.devices("gpu")) > 0
    except RuntimeError:
        return False


def select(device: str = "auto") -> str:
    """Make `device` JAX's default; returns the platform in use ('cpu' or 'gpu')."""
    if device not in DEVICES:
        raise ConfigError(f"device: unknown device {device!r}; known: {', '.join(DEVICES)}")
    if device == "cpu":
        jax.config.update("jax_platforms", "cpu")
        return "cpu"
    if device == "gpu":
        if not gpu_available():
            raise ConfigError("device: gpu requested but JAX sees no CUDA GPU "
                              "(install the GPU extra: pip install -e '.[gpu]')")
        jax.config.update("jax_default_device", jax.devices("gpu")[0])
        return "gpu"
    return "gpu" if gpu_available() else "cpu"
