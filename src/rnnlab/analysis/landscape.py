"""Accuracy of untrained random models, fast (Mehta VI.A: a million parameter draws per cell).

One compiled call evaluates a *chunk* of C random models on a whole classification data set and
returns C accuracies; nothing else leaves the kernel. The kernel is ``engine.prefix`` (prefix
sharing, the model axis on the SIMD lanes, the readout scored in place: see its docstring); the
training engine's validation passes run through the same kernel. This module adds:

* the parameters of a chunk are drawn vectorised with NumPy (the init scheme's distributions,
  ``cells.init.rule``), one generator per block of 64 draws seeded by (seed, cell, input, hidden,
  block): an accuracy depends only on (seed, cell, sizes, init scheme, draw index) - not on the
  chunk size, the shard a draw sits in, the backend, or the order chunks run in. (Drawing
  inside the compiled function with ``jax.random`` costs ~5 CPU-s of compilation per
  (cell, size) for the threefry samplers, more than the whole quick-scale budget, and no less
  run time); draws can be zero-padded to a larger (input, hidden) so that one compiled kernel
  serves several sizes - exact, a padded unit has zero weights to and from the real ones;
* chunks go to one stream per core (threads, like the training engine's shards), each drawing
  its next chunk (NumPy) while XLA computes its current one: XLA's own splitting of one kernel
  over the cores left them half idle.
"""
from __future__ import annotations

import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from .._jaxcfg import x64
from ..cells import init as inits
from ..engine import model as mdl
from ..engine.model import ModelSpec
from ..engine.prefix import (BLOCK, _PLANS, Plan, _check_fast, _compiler_options, _fast_path_ok,  # noqa: F401
                             _jitted, n_streams, pack_draws, pack_layout, prefix_plan, tensor_plan)
from ..errors import ConfigError

# ----------------------------------------------------------------------------- draws

#: draws come in blocks of this many, each from its own generator (part of the seeding contract)
RNG_BLOCK = 64


def _block_rng(seed: int, cell: str, input_dim: int, hidden: int, block: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(cell.encode()) & 0x7FFFFFFF, int(input_dim),
                                  int(hidden), int(block)])


def draw_block(spec: ModelSpec, seed: int, input_dim: int, hidden: int, block: int) -> dict:
    """Draws block*RNG_BLOCK .. (block+1)*RNG_BLOCK-1: a parameter tree with leaves
    [RNG_BLOCK, ...] (float64, each model at its own sizes)."""
    rng = _block_rng(seed, spec.cell, input_dim, hidden, block)
    tree: dict = {"cell": {}, "out": {}}
    for path, shape, role, fan_in in tensor_plan(spec, input_dim, hidden):
        a = inits.sample_np(rng, (RNG_BLOCK,) + tuple(shape), role, spec.init, fan_in, hidden)
        node = tree
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = a
    return tree


def draw_range(spec: ModelSpec, seed: int, input_dim: int, hidden: int, start: int, n: int) -> dict:
    """Draws start .. start+n-1 (leaves [n, ...], float64, own sizes)."""
    b0, b1 = start // RNG_BLOCK, -(-(start + n) // RNG_BLOCK)
    blocks = [draw_block(spec, seed, input_dim, hidden, b) for b in range(b0, b1)]
    off = start - b0 * RNG_BLOCK
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs)[off:off + n], *blocks)


def model_params(tree: dict, i: int) -> dict:
    """Model i of a drawn tree (the parameter tree of ``engine.model``)."""
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def pad_draws(spec: ModelSpec, tree: dict, input_dim: int, hidden: int, emax: int, hmax: int) -> dict:
    """Zero-pad drawn trees (leaves [n, ...]) from (input_dim, hidden) to (emax, hmax), gate
    block by gate block like ``engine.model.pad_params``. Exact: a padded unit has zero weights
    to and from every real unit and to the readout, so the real units compute what they
    compute alone."""
    if emax < input_dim or hmax < hidden:
        raise ConfigError(f"size: cannot pad {input_dim}x{hidden} to {emax}x{hmax}")
    axes = mdl.param_axes(spec)
    small = mdl._axis_sizes(spec, input_dim, hidden)
    big = mdl._axis_sizes(spec, emax, hmax)
    gates = spec.cell_def.gates

    def pad(x, ax):
        for d0, a in enumerate(ax):
            d = d0 + 1                                   # leading draw axis
            if small[a] == big[a]:
                continue
            w = [(0, 0)] * x.ndim
            if a == "gh":
                w[d] = (0, hmax - hidden)
                x = np.concatenate([np.pad(b, w) for b in np.split(x, gates, axis=d)], axis=d)
            else:
                w[d] = (0, big[a] - small[a])
                x = np.pad(x, w)
        return x
    return jax.tree_util.tree_map(pad, tree, axes, is_leaf=lambda x: isinstance(x, tuple))


class Landscape:
    """Random-draw accuracies of one (spec, input, hidden) on one classification data set.

    >>> ls = Landscape(spec, 4, 4, val_data, seed=0)
    >>> acc = ls.accuracies(0, 100_000)      # accuracies of draws 0 .. 99_999

    ``emax``/``hmax`` pad the models to a common size so that one compiled kernel serves several
    sizes (exact); ``chunk`` is the number of models per compiled call (any value; the draws do
    not depend on it)."""

    @x64
    def __init__(self, spec: ModelSpec, input_dim: int, hidden: int, data, seed: int, chunk: int = 128,
                 emax: int | None = None, hmax: int | None = None):
        mdl.check_size("input", input_dim)
        mdl.check_size("hidden", hidden)
        if chunk < 1:
            raise ConfigError(f"chunk: must be a positive integer, got {chunk!r}")
        self.spec, self.input_dim, self.hidden, self.chunk = spec, int(input_dim), int(hidden), int(chunk)
        self.emax = int(emax or input_dim)
        self.hmax = int(hmax or hidden)
        self.seed = int(seed)
        self.plan = prefix_plan(data.tokens, data.lengths, data.target_mask, data.accept, spec.vocab)
        self.plan_key = self.plan.key()
        _PLANS.setdefault(self.plan_key, self.plan)
        self.n = len(data)
        self.fast = _fast_path_ok(spec, self.emax, self.hmax)
        self.layout = pack_layout(spec, self.emax, self.hmax)
        self._go = jnp.asarray(True)     # traced, so that XLA keeps the conditionals (fusion boundaries)
        self._kernel = None
        self._compile_lock = threading.Lock()

    def draws(self, start: int, n: int) -> dict:
        """The drawn parameters (own sizes, float64), leaves [n, ...]."""
        return draw_range(self.spec, self.seed, self.input_dim, self.hidden, start, n)

    @x64
    def chunk_correct(self, start: int) -> np.ndarray:
        """Number of correctly classified sequences for draws start .. start+chunk-1."""
        return np.asarray(self._dispatch(start)).astype(np.int64)

    @x64
    def _dispatch(self, start: int):
        """Draw a chunk and start its evaluation (asynchronous: returns a device array)."""
        tree = pad_draws(self.spec, self.draws(start, self.chunk), self.input_dim, self.hidden,
                         self.emax, self.hmax)
        flat = pack_draws(self.spec, tree, self.layout)          # one array, converted in NumPy
        with self._compile_lock:       # compiled once per Landscape (cached by jit and on disk), not
            if self._kernel is None:   # once per stream; calling the executable directly skips jit's
                # per-call argument hashing (~0.6 ms/chunk)
                self._kernel = _jitted().lower(self.spec, self.hmax, self.plan_key, self.fast, self.layout,
                                               flat, self._go).compile()
        return self._kernel(flat, self._go)

    def chunk_accuracies(self, start: int) -> np.ndarray:
        return self.chunk_correct(start) / self.n

    def accuracies(self, start: int, n: int, progress: bool = False, desc: str = "") -> np.ndarray:
        """Accuracies of draws start .. start+n-1."""
        return self.correct(start, n, progress, desc) / self.n

    @x64
    def correct(self, start: int, n: int, progress: bool = False, desc: str = "",
                streams: int | None = None) -> np.ndarray:
        """Correct counts (out of len(data)) of draws start .. start+n-1. Chunks go round-robin
        to `streams` threads (default :func:`n_streams`), each drawing its next chunk while
        XLA computes its current one; a chunk's counts do not depend on the stream."""
        from ..progress import progress_bar
        out = np.empty(n, np.int64)
        bar = progress_bar(total=n, desc=desc or f"random {self.spec.cell} {self.input_dim}x{self.hidden}",
                           disable=not progress, unit="model")
        offsets = list(range(0, n, self.chunk))
        k = max(1, min(n_streams() if streams is None else int(streams), len(offsets)))
        lock = threading.Lock()

        @x64              # a thread starts with JAX's global setting: float64 again
        def stream(offs):
            pending = None             # (offset, device result) of the chunk XLA is computing

            def collect(off, dev):
                m = min(self.chunk, n - off)
                out[off:off + m] = np.asarray(dev).astype(np.int64)[:m]
                with lock:
                    bar.update(m)
            for off in offs:
                dev = self._dispatch(start + off)      # drawn while the previous chunk computes
                if pending is not None:
                    collect(*pending)
                pending = (off, dev)
            if pending is not None:
                collect(*pending)
        try:
            if k == 1:
                stream(offsets)
            else:
                with ThreadPoolExecutor(k, thread_name_prefix="rnnlab-landscape") as pool:
                    futs = [pool.submit(stream, offsets[i::k]) for i in range(k)]
                    for f in futs:
                        f.result()                                # re-raises a stream's error
        finally:
            bar.close()
        return out


@x64
def reference_accuracies(spec: ModelSpec, input_dim: int, hidden: int, data, seed: int, start: int,
                         n: int) -> np.ndarray:
    """The slow way, for checking the kernel: the same draws stacked into a Population and
    measured with ``engine.population.evaluate`` (the forward pass training uses)."""
    from ..engine.population import Population, evaluate
    from ..engine.train import device_data
    tree = draw_range(spec, seed, input_dim, hidden, start, n)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, spec.jdtype), tree)
    mask = jax.tree_util.tree_map(jnp.ones_like, params)
    pop = Population(spec, np.full(n, input_dim), np.full(n, hidden), np.arange(start, start + n), params, mask)
    _, acc = evaluate(spec, "xent", pop.hmax, params, mask, device_data(data, spec.jdtype))
    return np.asarray(acc, np.float64)


@x64
def models_per_second(spec: ModelSpec, input_dim: int, hidden: int, data, n: int = 4096,
                      chunk: int = 128, emax: int | None = None, hmax: int | None = None) -> dict:
    """Throughput of the kernel after compilation: wall-clock and per CPU-second (all threads)."""
    t0 = time.perf_counter()
    ls = Landscape(spec, input_dim, hidden, data, seed=0, chunk=chunk, emax=emax, hmax=hmax)
    ls.chunk_accuracies(0)
    compile_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    ls.accuracies(0, n)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"models_per_s": n / wall, "models_per_cpu_s": n / max(cpu, 1e-9), "setup_s": compile_s,
            "fast_path": ls.fast, "slots": ls.plan.n_slots, "prefixes": ls.plan.n_prefixes}
