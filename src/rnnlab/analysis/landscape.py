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
* the prefixes of one level are laid out on a [word, slot] grid, so the input of a step is the
  same along the whole slot axis: the input half of every gate (W_ih x + b_ih) is
  loop-invariant and computed once per (model, word) instead of once per prefix; the slot axis
  is rounded up to whole SIMD vectors;
* the cell's own step function is traced with *trailing* batch axes (``cells.base.
  trailing_batch``): state [S, C, word, slot], weights [..., C, 1, 1]; every matrix-vector
  product becomes an unrolled multiply-add, so a whole step is ONE fused, vectorised loop over
  the slot axis. A cell that cannot be traced that way (its result is checked against the
  vmapped step when the kernel is built) falls back to the vmapped step on the same layout;
* only the final state is read out (the classifier of the M tasks reads the last step), in
  place: every position of an end level is scored elementwise and weighted by how many
  sequences end there accepting each output (padding weighs 0), so no state is gathered;
* the next chunk is drawn (NumPy, on the Python thread) while XLA computes the current one.
"""
from __future__ import annotations

import hashlib
import time
import zlib
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..cells import base as cell_base
from ..cells import init as inits
from ..engine import model as mdl
from ..engine.model import ModelSpec
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


@dataclass(frozen=True)
class Plan:
    """The prefix tree of a data set on per-level [word, slot] grids.

    Level t holds the distinct prefixes of length t+1, grouped by their last word: prefix u sits
    at flat position ``word * M_t + rank`` of a [vocab, M_t] grid (unused positions are
    padding). ``parents[t]`` gives, for every position of level t, the flat position of its
    parent prefix in level t-1 (padding points at 0). A sequence of length L ends at level L-1;
    ``ends[j]`` lists the flat positions of the sequences ``order[...]`` (sequence ids, taken
    end level by end level) ending at level ``end_levels[j]``; ``weights[j][o, pos]`` counts the
    sequences ending at ``pos`` that accept output o there, which is all the kernel scores with."""
    vocab: int
    widths: tuple           # M_t per level
    parents: tuple          # per level: int32 [vocab * M_t] (level 0: None)
    end_levels: tuple
    ends: tuple             # per end level: int32 positions
    order: np.ndarray       # sequence ids, end level by end level (the order of `ends`)
    n_prefixes: int         # distinct prefixes (steps without padding)
    weights: tuple          # per end level: int [n_outputs, vocab * M_t] sequences ending at a
                            # position that accept output o there (0 at padding): no gather needed

    @property
    def n_slots(self) -> int:
        """Step evaluations per model, padding included."""
        return int(sum(self.vocab * m for m in self.widths))

    def key(self) -> str:
        h = hashlib.sha1()
        for part in (np.asarray(self.widths), *[np.array([-1]) if p is None else p for p in self.parents],
                     np.asarray(self.end_levels), *self.ends, self.order, *self.weights):
            h.update(np.ascontiguousarray(part).tobytes())
            h.update(b"|")
        return f"{self.vocab}-{h.hexdigest()}"


def prefix_plan(tokens: np.ndarray, lengths: np.ndarray, target_mask: np.ndarray, accept: np.ndarray,
                vocab: int) -> Plan:
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
    widths, parents, end_levels, ends, order = [], [], [], [], []
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
        m = -(-int(counts.max()) // LANES) * LANES    # whole SIMD vectors: no scalar remainder loop
        rank = np.arange(len(uniq)) - np.concatenate([[0], np.cumsum(counts)])[words]
        flat = words * m + rank
        par = np.zeros(vocab * m, np.int32)
        par[flat] = uniq[:, 1]
        widths.append(m)
        parents.append(None if t == 0 else par)
        n_prefixes += len(uniq)
        pos = np.zeros(n, np.int64)
        pos[alive] = flat[inv]
        pos_prev = pos
        done = np.flatnonzero(lengths == t + 1)
        if len(done):
            end_levels.append(t)
            ends.append(pos[done].astype(np.int32))
            order.append(done)
            w = np.zeros((acc_all.shape[1], vocab * m), np.int64)
            for o in range(acc_all.shape[1]):
                np.add.at(w[o], pos[done], acc_all[done, o])      # duplicates of a sequence add up
            weights.append(w)
    return Plan(int(vocab), tuple(widths), tuple(parents), tuple(end_levels), tuple(ends),
                np.concatenate(order), int(n_prefixes), tuple(weights))


_PLANS: dict[str, Plan] = {}

#: slot widths are rounded up to a multiple of this (8 float32 = one AVX2 vector)
LANES = 8


# ----------------------------------------------------------------------------- steps


def _trailing_step(cell, go=None):
    """The cell's step traced with trailing batch axes. With `go` (a traced True), every
    matrix-vector product whose vector does not vary along the slot axis (the input part
    W x of the gates: x depends only on (model, word)) is computed inside a conditional, i.e.
    once per (model, word) outside the step's fused loop, instead of once per prefix."""
    def hook(f, w, v):
        if go is None or v.shape[-1] != 1:
            return f(w, v)
        return jax.lax.cond(go, lambda a: f(*a), lambda a: jnp.zeros_like(f(*a)), (w, v))

    def step(p, s, x):
        with cell_base.trailing_batch(hook):
            return cell.step(p, s, x)
    return step


def _vmapped_step(cell):
    """The same computation through vmap (any cell): p leaves [..., C, 1, 1], s [S, C, V, M],
    x [E, C, V, 1]."""
    over_m = jax.vmap(cell.step, in_axes=(None, 1, 1), out_axes=1)
    over_v = jax.vmap(over_m, in_axes=(None, 1, 1), out_axes=1)
    over_c = jax.vmap(over_v, in_axes=(-1, 1, 1), out_axes=1)

    def step(p, s, x):
        p = jax.tree_util.tree_map(lambda a: a[..., 0, 0], p)
        return over_c(p, s, jnp.broadcast_to(x, x.shape[:-1] + s.shape[-1:]))
    return step


def _layout(spec: ModelSpec, params: dict):
    """Leaves [C, ...] -> cell leaves [..., C, 1, 1]; inputs per word [E, C, V, 1]."""
    pc = jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 0, -1)[..., None, None], params["cell"])
    if spec.embed:
        x = jnp.transpose(params["emb"], (2, 0, 1))[..., None]                 # [E, C, V, 1]
    else:
        c = params["out"]["W"].shape[0]
        eye = jnp.eye(spec.vocab, dtype=spec.jdtype)                           # [E=V, V]
        x = jnp.broadcast_to(eye[:, None, :, None], (spec.vocab, c, spec.vocab, 1))
    return pc, x


@partial(jax.jit, static_argnames=("spec", "hidden", "plan_key", "fast"))
def _evaluate_chunk(spec, hidden, plan_key, fast, params, consts):
    """Number of correctly classified sequences for every model of a chunk (params: leaves [C, ...])."""
    plan = _PLANS[plan_key]
    cell = spec.cell_def
    pc, x = _layout(spec, params)
    chunk = x.shape[1]
    step = _trailing_step(cell, consts["go"]) if fast else _vmapped_step(cell)
    s_dim = cell.state_mult * hidden
    v = plan.vocab
    correct = jnp.zeros((chunk,), jnp.int32)
    state = None
    for t, m in enumerate(plan.widths):
        if state is None:
            s0 = cell.init_state(hidden, spec.jdtype)[:, None, None, None]
            prev = jnp.broadcast_to(s0, (s_dim, chunk, v, m))
        else:
            flat = state.reshape(s_dim, chunk, -1)
            prev = jnp.take(flat, consts["parents"][t], axis=2).reshape(s_dim, chunk, v, m)
        # a conditional is a fusion boundary: the gather stays out of the step's loop, which
        # keeps the slot axis minor (XLA would otherwise pick a gather-friendly layout)
        state = jax.lax.cond(consts["go"], lambda a: step(*a), lambda a: a[1], (pc, prev, x))
        if t in plan.end_levels:
            j = plan.end_levels.index(t)
            correct = correct + _count_correct(spec, hidden, state.reshape(s_dim, chunk, -1),
                                               params["out"], consts["weights"][j])
    return correct


def _count_correct(spec, hidden, final, out, weights):
    """Correct sequences per model from the states [S, C, P] of one level's positions: the
    readout written as unrolled multiply-adds over the few hidden units, in the state's own
    layout (one elementwise loop; as a [C, N, H] x [C, O, H] contraction XLA made it a
    tiny-matrix call costing up to a fifth of a chunk), scored with the plan's per-position
    weights (how many sequences end there accepting each output), so no state is gathered.
    argmax semantics kept: the first maximal output wins, NaN counts as maximal."""
    s_dim = final.shape[0]
    seen = np.asarray(spec.cell_def.hidden_of(np.arange(s_dim), hidden)).reshape(-1)   # state rows the readout reads
    w = out["W"]                                                               # [C, O, H]
    logits = []
    for o in range(w.shape[1]):
        acc = sum(final[int(r)] * w[:, o, k][:, None] for k, r in enumerate(seen))
        if spec.out_bias:
            acc = acc + out["b"][:, o][:, None]
        logits.append(acc)                                                     # [C, N]
    pred = jnp.zeros(logits[0].shape, jnp.int32)
    best = logits[0]
    for o in range(1, len(logits)):
        better = (logits[o] > best) | (jnp.isnan(logits[o]) & ~jnp.isnan(best))
        pred = jnp.where(better, o, pred)
        best = jnp.where(better, logits[o], best)
    ok = sum(jnp.where(pred == o, weights[o][None, :], 0) for o in range(len(logits)))
    return jnp.sum(ok, axis=1)


_FAST: dict = {}


def _fast_path_ok(spec: ModelSpec, input_dim: int, hidden: int) -> bool:
    """Does the cell's step traced with trailing batch axes equal its vmapped step? (Cached.)"""
    k = (spec, input_dim, hidden)
    if k not in _FAST:
        _FAST[k] = _check_fast(spec, input_dim, hidden)
    return _FAST[k]


def _check_fast(spec: ModelSpec, input_dim: int, hidden: int) -> bool:
    cell = spec.cell_def
    tree = draw_range(spec, 0, input_dim, hidden, 0, 3)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, spec.jdtype), tree)
    s = jnp.asarray(np.random.default_rng(1).standard_normal((cell.state_mult * hidden, 3, spec.vocab, 2)),
                    spec.jdtype)

    @jax.jit
    def both(params, s, go):
        pc, x = _layout(spec, params)
        return _trailing_step(cell, go)(pc, s, x), _vmapped_step(cell)(pc, s, x)
    try:
        a, b = both(params, s, jnp.asarray(True))
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
        self.consts = {"parents": [None if p is None else jnp.asarray(p) for p in self.plan.parents],
                       "weights": [jnp.asarray(w, jnp.int32) for w in self.plan.weights],
                       "go": jnp.asarray(True)}

    def draws(self, start: int, n: int) -> dict:
        """The drawn parameters (own sizes, float64), leaves [n, ...]."""
        return draw_range(self.spec, self.seed, self.input_dim, self.hidden, start, n)

    def chunk_correct(self, start: int) -> np.ndarray:
        """Number of correctly classified sequences for draws start .. start+chunk-1."""
        return np.asarray(self._dispatch(start)).astype(np.int64)

    def _dispatch(self, start: int):
        """Draw a chunk and start its evaluation (asynchronous: returns a device array)."""
        tree = pad_draws(self.spec, self.draws(start, self.chunk), self.input_dim, self.hidden,
                         self.emax, self.hmax)
        # converted in NumPy: a device-side convert per leaf cost ~4% of a chunk
        params = jax.tree_util.tree_map(lambda a: np.asarray(a, self.spec.dtype), tree)
        return _evaluate_chunk(self.spec, self.hmax, self.plan_key, self.fast, params, self.consts)

    def chunk_accuracies(self, start: int) -> np.ndarray:
        return self.chunk_correct(start) / self.n

    def accuracies(self, start: int, n: int, progress: bool = False, desc: str = "") -> np.ndarray:
        """Accuracies of draws start .. start+n-1."""
        return self.correct(start, n, progress, desc) / self.n

    def correct(self, start: int, n: int, progress: bool = False, desc: str = "") -> np.ndarray:
        """Correct counts (out of len(data)) of draws start .. start+n-1."""
        from ..progress import progress_bar
        out = np.empty(n, np.int64)
        bar = progress_bar(total=n, desc=desc or f"random {self.spec.cell} {self.input_dim}x{self.hidden}",
                           disable=not progress, unit="model")
        pending = None                 # (offset, device result) of the chunk XLA is computing

        def collect(off, dev):
            m = min(self.chunk, n - off)
            out[off:off + m] = np.asarray(dev).astype(np.int64)[:m]
            bar.update(m)
        for off in range(0, n, self.chunk):
            dev = self._dispatch(start + off)       # drawn while the previous chunk computes
            if pending is not None:
                collect(*pending)
            pending = (off, dev)
        if pending is not None:
            collect(*pending)
        bar.close()
        return out


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
