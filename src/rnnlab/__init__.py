"""rnnlab: populations of small recurrent networks, trained and measured together in JAX.

Importing rnnlab changes no global setting of JAX, NumPy, matplotlib, logging or warnings:
float64 is switched on only inside rnnlab's own calls (:func:`float64`, a thread-local
context), and only the ``rnnlab`` command sets JAX's persistent compilation cache.
"""
from ._jaxcfg import float64
from .errors import ConfigError, PluginError, RnnlabError, StoreError

__version__ = "0.1.0"


def discrepancy(*args, **kwargs):
    """D(l, k) of Sterin et al.; see :func:`rnnlab.analysis.discrepancy.discrepancy`."""
    from .analysis.discrepancy import discrepancy as _d
    return _d(*args, **kwargs)


def open(path="results"):  # noqa: A001 - rnnlab.open("results"), like the built-in for files
    """The results of a results folder as pandas DataFrames; see :class:`rnnlab.results.Results`."""
    from .results import Results
    return Results(path)


def load_plugin(spec: str):
    """Import a plugin (a ``.py`` file or a module name) that registers cells, tasks or
    experiments; see :mod:`rnnlab.plugins`."""
    from . import plugins
    return plugins.load(spec)


__all__ = ["ConfigError", "PluginError", "RnnlabError", "StoreError", "discrepancy", "float64",
           "load_plugin", "open", "__version__"]
