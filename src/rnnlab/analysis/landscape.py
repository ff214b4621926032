"""Accuracy of untrained random models, fast (Mehta VI.A: a million parameter draws per cell).

One compiled call evaluates a *chunk* of C random models on a whole classification data set and
returns C accuracies; nothing else leaves the kernel. What makes it fast:

* the parameters of a chunk are drawn vectorised with NumPy (the init scheme's distributions,
  ``cells.init.rule``), one generator per block of 64 draws seeded by (seed, cell, input, hidden,
  block): an accuracy depends only on (seed, cell, sizes, init scheme, draw index) - not on the
  chunk size, the shard a draw sits in, the backend, or the order chunks run in. (Drawing
  inside the compiled function with ``jax.random`` costs ~5 CPU-s of compilation per
  (cell, size) for the threefry samplers, more than the whole quick-scale budget, and no less
  run time); draws can be zero-padded to a larger (input, hidden) so that one compiled kernel
  serves several sizes - exact, a padded unit has zero weights to and from the real ones;
* sequences share prefixes: the state after a prefix is computed once (10 one-word prefixes, at
  most 100 two-word prefixes, ...: ~15k instead of 20k steps for 2000 sequences of 10 words) -
  exact for any cell, since a step is a pure function of (state, word);
* the prefixes of one level are laid out on a [block, slot] grid whose blocks each hold prefixes
  ending with one word (``BLOCK`` slots), so the input of a step is the same along a block:
  the input half of every gate (W_ih x + b_ih) is computed once per (block, model) outside
  the step's loop instead of once per prefix;
* the model axis is the minor (SIMD) axis of every array: state [S, block, slot, C], weights
  [..., 1, 1, C]. The cell's own step function is traced with these *trailing* batch axes
  (``cells.base.trailing_batch``): every matrix-vector product becomes an unrolled
  multiply-add, so a whole step is ONE fused loop vectorised over models, and the parent
  gather between levels copies contiguous rows of C values. A cell that cannot be traced that
  way (its result is checked against the vmapped step when the kernel is built) falls back to
  the vmapped step on the same layout. On a CPU the kernel is compiled for 512-bit vectors
  where the machine has them (``_compiler_options``);
* only the final state is read out (the classifier of the M tasks reads the last step), in
  place: every position of an end level is scored elementwise and weighted by how many
  sequences end there accepting each output (padding weighs 0), so no state is gathered;
* chunks go to one stream per core (threads, like the training engine's shards), each drawing
  its next chunk (NumPy) while XLA computes its current one: XLA's own splitting of one kernel
  over the cores left them half idle.
"""
from __future__ import annotations

import hashlib
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .._jaxcfg import x64
from ..cells import base as cell_base
from ..cells import init as inits
from ..engine import model as mdl
from ..engine.model import ModelSpec
from ..envvars import positive_int
from ..errors import ConfigError

# ----------------------------------------------------------------------------- draws

#: draws come in blocks of this many, each from its own generator (part of the seeding contract)
RNG_BLOCK = 64


def _tensor_plan(spec: ModelSpec, input_dim: int, hidden: int) -> list:
    """(path, shape, role, fan_in) of every tensor, in the order ``engine.model.init_params``
    draws them, with the same distribution arguments."""
    cell = spec.cell_def
    e = spec.input_size(input_dim)
    fan = {"in": e, "h": hidden}
    out = []
    for name, prm in sorted(cell.param_specs(spec.bias).items()):
        out.append((("cell", name), cell.shape(name, e, hidden), prm.role,
                    fan[prm.axes[-1]] if prm.role != "bias" else hidden))
    out.append((("out", "W"), (spec.n_outputs, hidden), "out_w", hidden))
    if spec.out_bias:
        out.append((("out", "b"), (spec.n_outputs,), "out_b", hidden))
    if spec.embed:
        out.append((("emb",), (spec.vocab, input_dim), "emb", input_dim))
    return out


def _block_rng(seed: int, cell: str, input_dim: int, hidden: int, block: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(cell.encode()) & 0x7FFFFFFF, int(input_dim),
                                  int(hidden), int(block)])


def draw_block(spec: ModelSpec, seed: int, input_dim: int, hidden: int, block: int) -> dict:
    """Draws block*RNG_BLOCK .. (block+1)*RNG_BLOCK-1: a parameter tree with leaves
    [RNG_BLOCK, ...] (float64, each model at its own sizes)."""
    rng = _block_rng(seed, spec.cell, input_dim, hidden, block)
    tree: dict = {"cell": {}, "out": {}}
    for path, shape, role, fan_in in _tensor_plan(spec, input_dim, hidden):
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


# ----------------------------------------------------------------------------- prefix plan


#: slots per block of a level's grid: a block holds prefixes with the same last word (so the input
#: part of a step is the same along it); a word wastes at most BLOCK-1 slots per level. On the
#: 2000 First sequences 16 leaves 5.9% of the steps as padding (one row per word: 9.8%), and
#: 8-32 ran fastest on 2 cores (4 was slower for GRU(4,4): 9.8k against 12.2k models/s).
BLOCK = 16


@dataclass(frozen=True)
class Plan:
    """The prefix tree of a data set on per-level [block, slot] grids.

    Level t holds the distinct prefixes of length t+1 in ``blocks[t]`` blocks of ``block``
    slots; every prefix of a block ends with the word ``block_words[t][b]`` (unused slots are
    padding). ``parents[t]`` gives, for every flat position ``b * block + slot`` of level t, the
    flat position of its parent prefix in level t-1 (padding points at 0). A sequence of
    length L ends at level L-1; ``order`` lists the sequence ids end level by end level
    (``end_levels``); ``weights[j][o, pos]`` counts the sequences ending at ``pos`` of level
    ``end_levels[j]`` that accept output o there, which is all the kernel scores with."""
    vocab: int
    block: int              # slots per block
    blocks: tuple           # blocks per level
    block_words: tuple      # per level: int32 [blocks[t]] the last word of the block's prefixes
    parents: tuple          # per level: int32 [blocks[t] * block] (level 0: None)
    end_levels: tuple
    order: np.ndarray       # sequence ids, end level by end level
    n_prefixes: int         # distinct prefixes (steps without padding)
    weights: tuple          # per end level: int32 [n_outputs, blocks[t] * block] sequences ending at a
                            # position that accept output o there (0 at padding): no gather needed

    @property
    def n_slots(self) -> int:
        """Step evaluations per model, padding included."""
        return int(sum(self.blocks)) * self.block

    def key(self) -> str:
        h = hashlib.sha1()
        for part in (np.asarray([self.block, *self.blocks]), *self.block_words,
                     *[np.array([-1]) if p is None else p for p in self.parents],
                     np.asarray(self.end_levels), self.order, *self.weights):
            h.update(np.ascontiguousarray(part).tobytes())
            h.update(b"|")
        return f"{self.vocab}-{h.hexdigest()}"


def prefix_plan(tokens: np.ndarray, lengths: np.ndarray, target_mask: np.ndarray, accept: np.ndarray,
                vocab: int, block: int = BLOCK) -> Plan:
    """Plan for classification data: exactly one scored position per sequence, its last one."""
    tokens = np.asarray(tokens).astype(np.int64)
    lengths = np.asarray(lengths).astype(np.int64)
    n = len(tokens)
    tm = np.asarray(target_mask)
    if not (np.all(tm.sum(axis=1) == 1) and np.all(tm[np.arange(n), lengths - 1] == 1)):
        raise ConfigError("task: the random-draw kernel needs a classification task "
                          "(one scored position per sequence, at its end)")
    if tokens.min() < 0 or tokens.max() >= vocab:
        raise ConfigError(f"task: token ids must lie in [0, {vocab})")
    blocks, block_words, parents, end_levels, order = [], [], [], [], []
    pos_prev = np.zeros(n, np.int64)         # flat position of every sequence's prefix at level t-1
    n_prefixes = 0
    acc_all = np.asarray(accept)[np.arange(n), lengths - 1].astype(np.int64)       # [N, n_outputs]
    weights = []
    for t in range(int(lengths.max())):
        alive = np.flatnonzero(lengths > t)
        key = np.stack([tokens[alive, t], pos_prev[alive]], axis=1)   # (word, parent position)
        uniq, inv = np.unique(key, axis=0, return_inverse=True)       # sorted by word, then parent
        inv = inv.reshape(-1)
        words = uniq[:, 0]
        counts = np.bincount(words, minlength=vocab)
        per_word = -(-counts // block)                                # blocks of each word
        first_block = np.concatenate([[0], np.cumsum(per_word)])[:-1]
        rank = np.arange(len(uniq)) - np.concatenate([[0], np.cumsum(counts)])[words]
        flat = (first_block[words] + rank // block) * block + rank % block
        nb = int(per_word.sum())
        par = np.zeros(nb * block, np.int32)
        par[flat] = uniq[:, 1]
        blocks.append(nb)
        block_words.append(np.repeat(np.arange(vocab), per_word).astype(np.int32))
        parents.append(None if t == 0 else par)
        n_prefixes += len(uniq)
        pos = np.zeros(n, np.int64)
        pos[alive] = flat[inv]
        pos_prev = pos
        done = np.flatnonzero(lengths == t + 1)
        if len(done):
            end_levels.append(t)
            order.append(done)
            w = np.zeros((acc_all.shape[1], nb * block), np.int32)
            for o in range(acc_all.shape[1]):
                np.add.at(w[o], pos[done], acc_all[done, o])      # duplicates of a sequence add up
            weights.append(w)
    return Plan(int(vocab), int(block), tuple(blocks), tuple(block_words), tuple(parents), tuple(end_levels),
                np.concatenate(order), int(n_prefixes), tuple(weights))


_PLANS: dict[str, Plan] = {}


# ----------------------------------------------------------------------------- packed parameters


def pack_layout(spec: ModelSpec, input_dim: int, hidden: int) -> tuple:
    """(key, shape) of every tensor in a packed chunk, in order: the cell's tensors, the readout,
    the embedding transposed to [E, V] (static: part of the compiled kernel's key)."""
    out = []
    for path, shape, _, _ in _tensor_plan(spec, input_dim, hidden):
        shape = tuple(int(d) for d in shape)
        if path == ("emb",):
            shape = shape[::-1]
        out.append(("/".join(path), shape))
    return tuple(out)


def pack_draws(spec: ModelSpec, tree: dict, layout: tuple) -> np.ndarray:
    """Drawn (padded) trees, leaves [C, ...], as ONE [n_values, C] array of the kernel's dtype,
    model axis minor: one transfer per chunk, and no transposes inside the kernel."""
    parts = []
    for key, _ in layout:
        node = tree
        for k in key.split("/"):
            node = node[k]
        a = np.asarray(node)
        if key == "emb":
            a = a.transpose(0, 2, 1)
        parts.append(a.reshape(a.shape[0], -1))
    return np.ascontiguousarray(np.concatenate(parts, axis=1).T, dtype=spec.dtype)


def _unpack(spec: ModelSpec, layout: tuple, flat):
    """[n_values, C] -> cell leaves [..., 1, 1, C], inputs per word x [E, V, 1, C], readout
    W [O, H, C] and b [O, C] (or None)."""
    chunk = flat.shape[-1]
    leaves, off = {}, 0
    for key, shape in layout:
        n = int(np.prod(shape))
        leaves[key] = flat[off:off + n].reshape(shape + (chunk,))
        off += n
    pc = {k.split("/", 1)[1]: v.reshape(v.shape[:-1] + (1, 1, chunk))
          for k, v in leaves.items() if k.startswith("cell/")}
    if spec.embed:
        x = leaves["emb"][:, :, None, :]                                       # [E, V, 1, C]
    else:
        eye = jnp.eye(spec.vocab, dtype=spec.jdtype)                           # [E=V, V]
        x = jnp.broadcast_to(eye[:, :, None, None], (spec.vocab, spec.vocab, 1, chunk))
    return pc, x, leaves["out/W"], leaves.get("out/b")


# ----------------------------------------------------------------------------- one level


def _trailing_step(cell, go=None):
    """The cell's step traced with trailing batch axes [block, slot, model]. With `go` (a traced
    True), every matrix-vector product whose vector does not vary along the slot axis (the input
    part W x of the gates: x depends only on (block, model)) is computed inside a conditional,
    i.e. once per (block, model) outside the step's fused loop, instead of once per prefix."""
    def hook(f, w, v):
        if go is None or v.shape[-2] != 1:
            return f(w, v)
        return jax.lax.cond(go, lambda a: f(*a), lambda a: jnp.zeros_like(f(*a)), (w, v))

    def step(p, s, x):
        with cell_base.trailing_batch(hook):
            return cell.step(p, s, x)
    return step


def _vmapped_step(cell):
    """The same computation through vmap (any cell): p leaves [..., 1, 1, C], s [S, B, K, C],
    x [E, B, 1, C]."""
    over_c = jax.vmap(cell.step, in_axes=(-1, 1, 1), out_axes=1)
    over_m = jax.vmap(over_c, in_axes=(None, 1, 1), out_axes=1)
    over_v = jax.vmap(over_m, in_axes=(None, 1, 1), out_axes=1)

    def step(p, s, x):
        p = jax.tree_util.tree_map(lambda a: a[..., 0, 0, :], p)
        return over_v(p, s, jnp.broadcast_to(x, x.shape[:2] + s.shape[2:]))
    return step


def _level_fns(cell, fast: bool, go):
    """(prepare(pc, x [E, V, 1, C]) -> xw, level(pc, prev [S, B, K, C], xw, block_words) -> state).

    Conditionals on the traced True `go` are fusion boundaries: they keep gathers out of the
    step's fused loop (fused, it ran 2-3x slower: XLA computes a gather's index per element)
    and keep the input part out of it. A split cell (``Cell.split``) projects its inputs once
    per (word, model) for the whole chunk; the other cells project per (block, model) through
    the matvec hook. Inputs are kept word-major ([V, ., 1, C]) so that picking each block's word
    copies whole rows; the step reads them through a transposed index."""
    def materialise(f):
        return lambda *a: jax.lax.cond(go, lambda b: f(*b), lambda b: jnp.zeros_like(f(*b)), a)
    if fast and cell.split:
        def proj(pc, x):
            with cell_base.trailing_batch():
                return jnp.moveaxis(cell.input_proj(pc, x), 1, 0)              # [V, G, 1, C]

        def step(pc, prev, xb):
            with cell_base.trailing_batch():
                return cell.step_proj(pc, prev, xb)
        prepare = materialise(proj)
    else:
        prepare = lambda pc, x: jnp.moveaxis(x, 1, 0)                           # noqa: E731  [V, E, 1, C]
        step = _trailing_step(cell, go) if fast else _vmapped_step(cell)

    def level(pc, prev, xw, block_words):
        xb = jnp.take(xw, block_words, axis=0)                                 # [B, ., 1, C]
        return jax.lax.cond(go, lambda a: step(a[0], a[1], jnp.moveaxis(a[2], 0, 1)),
                            lambda a: jnp.zeros_like(a[1]), (pc, prev, xb))
    return prepare, level


# ----------------------------------------------------------------------------- the kernel


def _evaluate_chunk_impl(spec, hidden, plan_key, fast, layout, flat, go):
    """Number of correctly classified sequences for every model of a packed chunk (flat
    [n_values, C]). States are [S, block, slot, C] per level (see the module's docstring); the
    plan's index arrays are constants of the compiled kernel."""
    plan = _PLANS[plan_key]
    cell = spec.cell_def
    pc, x, w_out, b_out = _unpack(spec, layout, flat)
    chunk = flat.shape[-1]
    prepare, level = _level_fns(cell, fast, go)
    xw = prepare(pc, x)
    s_dim = cell.state_mult * hidden
    k = plan.block
    correct = jnp.zeros((chunk,), jnp.int32)
    state = None
    for t, nb in enumerate(plan.blocks):
        if state is None:
            s0 = cell.init_state(hidden, spec.jdtype)[:, None, None, None]
            prev = jnp.broadcast_to(s0, (s_dim, nb, k, chunk))
        else:
            prev = jnp.take(state.reshape(s_dim, -1, chunk), plan.parents[t], axis=1).reshape(s_dim, nb, k, chunk)
        state = level(pc, prev, xw, plan.block_words[t])
        if t in plan.end_levels:
            j = plan.end_levels.index(t)
            correct = correct + _count_correct(spec, hidden, state.reshape(s_dim, -1, chunk), w_out, b_out,
                                               plan.weights[j])
    return correct


def _compiler_options() -> dict:
    """On a CPU, let XLA vectorise 512 bits wide where the machine has AVX-512: the step loop is
    bound by instruction count, and on the 2-core AVX-512 machine of benchmarks/ this took GRU(4,4)
    from ~5k to ~7.8k models/s per core (LLVM falls back to narrower vectors elsewhere)."""
    return {"xla_cpu_prefer_vector_width": 512} if jax.default_backend() == "cpu" else {}


_KERNELS: dict = {}


def _jitted():
    backend = jax.default_backend()
    if backend not in _KERNELS:
        _KERNELS[backend] = jax.jit(_evaluate_chunk_impl, static_argnames=("spec", "hidden", "plan_key", "fast",
                                                                            "layout"),
                                    compiler_options=_compiler_options())
    return _KERNELS[backend]


def _count_correct(spec, hidden, final, w_out, b_out, weights):
    """Correct sequences per model from the states [S, P, C] of one level's positions: the
    readout written as unrolled multiply-adds over the few hidden units, in the state's own
    layout (one elementwise loop; as a [C, N, H] x [C, O, H] contraction XLA made it a
    tiny-matrix call costing up to a fifth of a chunk), scored with the plan's per-position
    weights (how many sequences end there accepting each output), so no state is gathered.
    argmax semantics kept: the first maximal output wins, NaN counts as maximal."""
    s_dim = final.shape[0]
    seen = np.asarray(spec.cell_def.hidden_of(np.arange(s_dim), hidden)).reshape(-1)   # state rows the readout reads
    logits = []
    for o in range(w_out.shape[0]):
        acc = sum(final[int(r)] * w_out[o, k][None, :] for k, r in enumerate(seen))
        if b_out is not None:
            acc = acc + b_out[o][None, :]
        logits.append(acc)                                                     # [P, C]
    pred = jnp.zeros(logits[0].shape, jnp.int32)
    best = logits[0]
    for o in range(1, len(logits)):
        better = (logits[o] > best) | (jnp.isnan(logits[o]) & ~jnp.isnan(best))
        pred = jnp.where(better, o, pred)
        best = jnp.where(better, logits[o], best)
    ok = sum(jnp.where(pred == o, weights[o][:, None], 0) for o in range(len(logits)))
    return jnp.sum(ok, axis=0)


_FAST: dict = {}


def _fast_path_ok(spec: ModelSpec, input_dim: int, hidden: int) -> bool:
    """Does the cell's step traced with trailing batch axes equal its vmapped step? (Cached.)"""
    k = (spec, input_dim, hidden)
    if k not in _FAST:
        _FAST[k] = _check_fast(spec, input_dim, hidden)
    return _FAST[k]


def _check_fast(spec: ModelSpec, input_dim: int, hidden: int) -> bool:
    """One level of the fast path against the vmapped step, on random states laid out as in the
    kernel (more blocks than words, several slots per block, 3 models)."""
    cell = spec.cell_def
    layout = pack_layout(spec, input_dim, hidden)
    flat = pack_draws(spec, draw_range(spec, 0, input_dim, hidden, 0, 3), layout)
    rng = np.random.default_rng(1)
    s = rng.standard_normal((cell.state_mult * hidden, spec.vocab + 3, 2, 3)).astype(spec.dtype)
    block_words = rng.integers(0, spec.vocab, spec.vocab + 3).astype(np.int32)

    @jax.jit
    def both(flat, s, go):
        pc, x, _, _ = _unpack(spec, layout, flat)
        out = []
        for fast in (True, False):
            prepare, level = _level_fns(cell, fast, go)
            out.append(level(pc, s, prepare(pc, x), block_words))
        return out
    try:
        a, b = both(flat, s, jnp.asarray(True))
    except (TypeError, ValueError):   # shapes that do not trace that way (e.g. a bare `@`): vmapped step
        return False
    tol = 1e-5 if spec.dtype == "float32" else 1e-12
    return a.shape == b.shape and bool(jnp.allclose(a, b, rtol=tol, atol=tol))


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


def n_streams() -> int:
    """Concurrent chunk streams: one per core of this thread's share on a CPU (as the training
    engine's shards, ``engine.train.n_shards``; at most 4), one on a GPU. RNNLAB_STREAMS
    overrides. Two streams on 2 cores ran GRU(4,4) 1.5-1.9x faster than one: XLA's own
    splitting of a kernel over the cores leaves them half idle here."""
    env = positive_int("RNNLAB_STREAMS")
    if env:
        return env
    if jax.default_backend() != "cpu":
        return 1
    from ..engine.train import _cpus
    return max(1, min(_cpus(), 4))


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
