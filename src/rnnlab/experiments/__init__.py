"""Experiment registry: every module of this package with a NAME is an experiment, and so is
every module given to :func:`register` (a plugin's; contract in ``base`` and docs/extending.md).

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
#: experiments registered by plugins (name -> module), after the built-in ones
_EXTRA: dict = {}
#: what a module needs to be an experiment
CONTRACT = ("NAME", "PAPER", "SOURCE", "QUESTION", "default_config", "execute", "claims", "figures")


def register(mod):
    """Add an experiment module (or any object with the contract's attributes: NAME, PAPER,
    SOURCE, QUESTION, default_config(scale), execute(ctx), claims(tables, config),
    figures(tables, config); optional CHOICES, VERSION, ORDER, validate(config)). Returns it."""
    missing = [a for a in CONTRACT if not hasattr(mod, a)]
    if missing:
        raise ConfigError(f"experiment: {getattr(mod, '__name__', mod)!r} lacks {', '.join(missing)} "
                          "(see docs/extending.md, the experiment contract)")
    for a in CONTRACT[4:]:
        if not callable(getattr(mod, a)):
            raise ConfigError(f"experiment {mod.NAME}: {a} must be callable")
    name = mod.NAME
    if not isinstance(name, str) or not name or set(name) & set(",:= \t\n/\\"):
        raise ConfigError(f"experiment: invalid experiment name {name!r}")
    if name in _discover_cached():
        raise ConfigError(f"experiment: {name!r} is a built-in experiment; give yours another name")
    _EXTRA[name] = mod
    return mod


def _discover_cached() -> dict:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _discover()
    return _REGISTRY


def extra() -> dict:
    """The experiments registered by plugins."""
    return dict(_EXTRA)


def registry() -> dict:
    """Every experiment: the built-in ones in the papers' order, then the registered ones."""
    from .. import plugins
    plugins.autoload()
    return {**_discover_cached(), **_EXTRA}


def names(paper: str | None = None) -> list[str]:
    return [n for n, m in registry().items() if paper in (None, "all") or m.PAPER == paper]


def get(name: str):
    reg = registry()
    if name not in reg:
        raise ConfigError(f"experiment: unknown experiment {name!r}; known: {', '.join(reg)}")
    return reg[name]


def run(name: str, config: dict | None = None, **kw) -> ExperimentResult:
    return _run(name, config, **kw)


__all__ = ["ExperimentResult", "extra", "get", "names", "register", "registry", "resolve_config", "run"]
