"""What every process that runs shards for rnnlab does before it runs one: the same plugins as
the driver, the compilation cache, float64 on (the local backend's worker processes and the Ray
workers alike).

The driver sends :func:`setup` (its plugins, its compilation cache) and a *reference* to the
shard function (module and qualified name, :func:`ref`) with every shard: a shard function a
plugin file defines can only be found once that plugin is loaded, so it is looked up after
:func:`prepare`, not unpickled before it.
"""
from __future__ import annotations

import importlib

from .. import plugins
from .._jaxcfg import float64, use_compilation_cache
from ..errors import ConfigError


def setup() -> dict:
    """What a worker needs to compute like the driver: the plugins loaded here, the
    compilation cache in use here (None: the default of :func:`rnnlab._jaxcfg.cache_dir`)."""
    import jax
    return {"plugins": plugins.loaded(), "cache": jax.config.jax_compilation_cache_dir or None}


def prepare(setup: dict | None) -> None:
    """Load the driver's plugins (once per process) and use a compilation cache."""
    setup = setup or {}
    plugins.ensure(setup.get("plugins") or [])
    use_compilation_cache(setup.get("cache"))


def ref(fn):
    """("ref", module, qualname) for a module-level function of an importable module, else fn
    itself (pickled as is: a function of __main__, a lambda or a closure)."""
    mod, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if mod and mod != "__main__" and qual and "<" not in qual:
        return ("ref", mod, qual)
    return fn


def resolve(fnref):
    if isinstance(fnref, tuple) and len(fnref) == 3 and fnref[0] == "ref":
        obj = importlib.import_module(fnref[1])
        for part in fnref[2].split("."):
            obj = getattr(obj, part)
        return obj
    return fnref


def run_shard(fnref, shard, setup: dict | None = None):
    """Prepare this process, then fn(shard) with float64 on."""
    prepare(setup)
    fn = resolve(fnref)
    with float64():
        return fn(shard)


def check_shippable(shards) -> None:
    """ConfigError when a shard names a cell or task registered in this process only (not by a
    plugin): another process could not know it."""
    bad = plugins.local_only(shards)
    if bad:
        raise ConfigError(f"plugin: {', '.join(bad)} is registered in this process only, so worker "
                          "processes cannot see it: put it in a module or file and load it as a plugin "
                          "(--plugin FILE, RNNLAB_PLUGINS or rnnlab.load_plugin)")
