"""Experiment registry: every module of this package with a NAME is an experiment.

``rnnlab.experiments.get("trainability-grid").run(config)`` or
``rnnlab.experiments.run("trainability-grid", config, scale="quick")``.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..errors import ConfigError
from .base import ExperimentResult, resolve_config
from .base import run as _run

_SKIP = {"base", "common"}


def _discover() -> dict:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in _SKIP or info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "NAME"):
            found[mod.NAME] = mod
    order = {"mehta": 0, "sterin": 1, "beyond": 2}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[1].PAPER, 9), getattr(kv[1], "ORDER", 99), kv[0])))


_REGISTRY: dict | None = None


def registry() -> dict:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _discover()
    return _REGISTRY


def names(paper: str | None = None) -> list[str]:
    return [n for n, m in registry().items() if paper in (None, "all") or m.PAPER == paper]


def get(name: str):
    reg = registry()
    if name not in reg:
        raise ConfigError(f"experiment: unknown experiment {name!r}; known: {', '.join(reg)}")
    return reg[name]


def run(name: str, config: dict | None = None, **kw) -> ExperimentResult:
    return _run(name, config, **kw)


__all__ = ["ExperimentResult", "get", "names", "registry", "resolve_config", "run"]
