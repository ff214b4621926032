"""Settings read from the environment (RNNLAB_*), checked the same way everywhere."""
from __future__ import annotations

import os

from .errors import ConfigError


def positive_int(name: str) -> int | None:
    """The value of environment variable `name` as a positive integer, None when unset or
    empty; anything else is a ConfigError naming the variable."""
    env = os.environ.get(name)
    if not env:
        return None
    try:
        v = int(env)
    except ValueError:
        v = 0
    if v < 1:
        raise ConfigError(f"{name}: must be a positive integer, got {env!r}")
    return v


def memory_maps() -> tuple[int | None, int | None]:
    """(memory maps this process holds, the kernel's per-process limit), or None where the
    system does not say (Linux: /proc/self/maps and vm.max_map_count)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            used = sum(1 for _ in f)
        with open("/proc/sys/vm/max_map_count") as f:
            limit = int(f.read().strip())
        return used, limit
    except (OSError, ValueError):
        return None, None
