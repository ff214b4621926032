"""JAX settings rnnlab needs, without changing its user's global settings.

* **float64.** Several measures need float64 (discrepancy, fixed points, Lyapunov spectra, the
  float64 equivalence tests) and model seeds are int64. rnnlab never switches JAX's global
  ``jax_enable_x64``: its entry points (public engine/analysis functions, ``experiments.run``,
  the CLI, the shard functions the backends run) run inside :func:`float64`, a thread-local
  context, and every thread rnnlab starts enters it again (a thread does not inherit it).
  Outside rnnlab's calls JAX behaves as the user set it. Jitted functions are cached per x64
  state, so they compile once for rnnlab's calls.
* **Compiler options.** :func:`jit` is ``jax.jit`` with XLA:CPU options of that program only
  (:data:`CPU_OPTIONS`; nothing global): on a CPU backend rnnlab's programs compile with XLA's
  fusion emitters off.
* **Compilation cache.** :func:`use_compilation_cache` keeps compiled XLA programs on disk
  (``RNNLAB_JAX_CACHE``, default ``~/.cache/rnnlab/jax``; ``0`` turns it off). Only rnnlab's own
  processes call it: the ``rnnlab`` command, its worker processes, the test suite.
"""
from __future__ import annotations

import functools
import os
import threading

import jax

try:                                      # JAX >= 0.7: a thread-local config state
    from jax import enable_x64 as _enable_x64
except ImportError:                       # older JAX
    from jax.experimental import enable_x64 as _enable_x64


def float64():
    """Context manager: JAX computes with float64/int64 available in this thread (what every
    rnnlab computation runs under). Use it around your own JAX code that needs float64, e.g.
    calling a cell's ``step`` on float64 arrays::

        with rnnlab.float64():
            h = cell.step(p, cell.init_state(4, jnp.float64), x)
    """
    return _enable_x64(True)


def x64(fn):
    """Decorator: run ``fn`` inside :func:`float64` (a fresh context per call, so it nests and
    is safe in threads). Not for generator functions (the context would end at the first
    ``yield``)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _enable_x64(True):
            return fn(*args, **kwargs)
    return wrapper


def x64_enabled() -> bool:
    """Whether float64 is on in this thread (globally or by a context)."""
    return bool(jax.config.jax_enable_x64)


def cache_dir() -> str | None:
    """The compilation cache folder rnnlab's processes use (None: off)."""
    path = os.environ.get("RNNLAB_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "rnnlab", "jax"))
    return None if path == "0" else path


def use_compilation_cache(path: str | None = None) -> str | None:
    """Keep compiled XLA programs in `path` (default :func:`cache_dir`): a population's epoch
    function then compiles once per shape per machine, not once per process. For rnnlab's own
    processes only (it sets JAX's process-wide cache). A cache the process already has (e.g.
    ``JAX_COMPILATION_CACHE_DIR``) is kept. Returns the folder in use."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    path = cache_dir() if path is None else path
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path or None


#: XLA:CPU compiler options of rnnlab's programs (passed per jit: nothing global). The fusion
#: emitters off compile the papers' small programs 25-35% faster at the same run time (measured,
#: one core, cold: the models-first epoch GRU(16) M=16 3.9 -> 3.1 s to compile, 0.51 -> 0.50 s
#: per epoch; the discrepancy kernel 1.5 -> 1.05 s, same run time; trainability-grid at quick
#: 72 -> 55 s). The lane kernel chooses per population size (engine.lanes).
CPU_OPTIONS = {"xla_cpu_use_fusion_emitters": False}
#: ... and for the epochs of small populations (at most 16 models), 128-bit vectors: LLVM emits
#: less code for the many small loops. Measured (one core, 5-16 models, cold): the lane epoch of
#: GRU(4,4) compiles 10-18% faster, the models-first epoch of GRU(8,8) 6% faster, both epochs
#: within noise; at 32-64 models the epochs ran 5-11% slower, so large populations keep XLA's
#: default width.
SMALL_OPTIONS = {"xla_cpu_prefer_vector_width": 128}


class _BackendJit:
    """``jax.jit(fun, **kw)`` compiled with :data:`CPU_OPTIONS` when JAX's default backend is
    the CPU, with no options elsewhere (one jitted function per backend). Called inside another
    jit (tracer arguments) it is a plain ``jax.jit``: XLA takes options at the top level only."""

    def __init__(self, fun, kw, cpu_options=None, fast_compile=True):
        self._fun, self._kw, self._jits, self._lock = fun, kw, {}, threading.Lock()
        self._cpu = dict(CPU_OPTIONS if fast_compile else {}, **(cpu_options or {}))
        self._plain = None
        functools.update_wrapper(self, fun)

    def _get(self):
        backend = jax.default_backend()
        fn = self._jits.get(backend)
        if fn is None:
            with self._lock:
                fn = self._jits.get(backend)
                if fn is None:
                    opts = dict(self._cpu) if backend == "cpu" else None
                    fn = self._jits[backend] = jax.jit(self._fun, compiler_options=opts, **self._kw)
        return fn

    def __call__(self, *args, **kwargs):
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves((args, kwargs))):
            # inside someone's jit: XLA takes compiler options at the top level only
            if self._plain is None:
                self._plain = jax.jit(self._fun, **self._kw)
            return self._plain(*args, **kwargs)
        return self._get()(*args, **kwargs)

    def lower(self, *args, **kwargs):
        return self._get().lower(*args, **kwargs)

    def _cache_size(self) -> int:
        return sum(f._cache_size() for f in self._jits.values())


def jit(fun=None, *, cpu_options: dict | None = None, fast_compile: bool = True, **kw):
    """``jax.jit`` with rnnlab's XLA:CPU compiler options (:data:`CPU_OPTIONS`, unless
    `fast_compile` is False, updated with `cpu_options`) on a CPU backend; usable as ``@jit``,
    ``@partial(jit, static_argnames=...)`` or ``jit(f, ...)``."""
    if fun is None:
        return functools.partial(jit, cpu_options=cpu_options, fast_compile=fast_compile, **kw)
    return _BackendJit(fun, kw, cpu_options, fast_compile)
