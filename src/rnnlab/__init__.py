"""rnnlab: populations of small recurrent networks, trained and measured together in JAX."""
import jax as _jax

# float64 must be available for the measures that need it (discrepancy, equivalence tests);
# every array rnnlab makes names its dtype explicitly, float32 is the training default.
_jax.config.update("jax_enable_x64", True)


def _compilation_cache() -> None:
    """Keep compiled XLA programs on disk (RNNLAB_JAX_CACHE, default ~/.cache/rnnlab/jax; "0"
    turns it off): a population's epoch function compiles once per shape per machine, not once
    per process."""
    import os
    path = os.environ.get("RNNLAB_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "rnnlab", "jax"))
    if path != "0":
        _jax.config.update("jax_compilation_cache_dir", path)
        _jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


_compilation_cache()

from .errors import ConfigError, RnnlabError, StoreError  # noqa: E402

__version__ = "0.1.0"


def discrepancy(*args, **kwargs):
    """D(l, k) of Sterin et al.; see :func:`rnnlab.analysis.discrepancy.discrepancy`."""
    from .analysis.discrepancy import discrepancy as _d
    return _d(*args, **kwargs)


__all__ = ["ConfigError", "RnnlabError", "StoreError", "discrepancy", "__version__"]
