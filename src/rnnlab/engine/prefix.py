"""Forward passes of many models over a classification data set, sharing prefixes.

One compiled call runs a *chunk* of C models (any parameters: random draws for
``analysis.landscape``, trained populations for the validation passes of ``engine.train``) on a
whole data set whose sequences are each scored once, at their end (the M tasks), and returns
per-model counts of correct sequences (and, if asked, the summed loss); nothing else leaves the
kernel. What makes it fast:

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
  sequences end there accepting each output (and, for the loss, having each target; padding
  weighs 0), so no state is gathered.

Models are zero-padded to one (input, hidden) per kernel: exact, a padded unit has zero weights
to and from the real ones (masked parameters, as the training engine keeps them).

Measured (2-core AVX-512 VM, 96 models, First's 2000 validation sequences, float32): one
validation pass took 0.012 s here against 0.18 s through ``engine.population.evaluate`` at
GRU(4, 4), 0.071 against 0.57 s at GRU(4, 16), and 0.007 against 0.084 s at RNN-tanh(4, 8);
accuracies equal to 5e-8.

Measured and not kept (same machine, cold compilations): the levels after the third run in one
``lax.scan`` padded to the largest level, to compile less: no gain at First's 10 levels (0.72 ->
0.82 s; 1.78 -> 0.87 s at 20 levels), ~1/3 slower to run; a first call's ~0.8 s is mostly a
fixed cost, not per level. XLA's fast-math options (reciprocal divisions, approximate
functions) ran the random-draw kernel 5-15% faster but change the rounding of every step.
"""
from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .._jaxcfg import x64
from .. import cells
from ..cells import base as cell_base
from ..envvars import positive_int
from ..errors import ConfigError
from .model import ModelSpec


def tensor_plan(spec: ModelSpec, input_dim: int, hidden: int) -> list:
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
    ``end_levels[j]`` that accept output o there, which is all the kernel scores accuracy with;
    ``target_weights[j][o, pos]`` (plans made with targets) counts those whose target is o,
    which is all it needs for the loss."""
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
    target_weights: tuple | None = None   # per end level: int32 [n_outputs, blocks[t] * block]
                                          # sequences ending at a position with target o (or None)

    @property
    def n_slots(self) -> int:
        """Step evaluations per model, padding included."""
        return int(sum(self.blocks)) * self.block

    def key(self) -> str:
        h = hashlib.sha1()
        for part in (np.asarray([self.block, *self.blocks]), *self.block_words,
                     *[np.array([-1]) if p is None else p for p in self.parents],
                     np.asarray(self.end_levels), self.order, *self.weights,
                     *(self.target_weights or ())):
            h.update(np.ascontiguousarray(part).tobytes())
            h.update(b"|")
        return f"{self.vocab}-{'t' if self.target_weights else ''}{h.hexdigest()}"


def prefix_plan(tokens: np.ndarray, lengths: np.ndarray, target_mask: np.ndarray, accept: np.ndarray,
                vocab: int, block: int = BLOCK, targets: np.ndarray | None = None) -> Plan:
    """Plan for classification data: exactly one scored position per sequence, its last one.
    With `targets` ([N, T] target ids) the plan also counts targets per position, so that the
    kernel can sum the loss."""
    tokens = np.asarray(tokens).astype(np.int64)
    lengths = np.asarray(lengths).astype(np.int64)
    n = len(tokens)
    tm = np.asarray(target_mask)
    if not (np.all(tm.sum(axis=1) == 1) and np.all(tm[np.arange(n), lengths - 1] == 1)):
        raise ConfigError("task: the prefix kernel needs a classification task "
                          "(one scored position per sequence, at its end)")
    if tokens.min() < 0 or tokens.max() >= vocab:
        raise ConfigError(f"task: token ids must lie in [0, {vocab})")
    blocks, block_words, parents, end_levels, order = [], [], [], [], []
    pos_prev = np.zeros(n, np.int64)         # flat position of every sequence's prefix at level t-1
    n_prefixes = 0
    acc_all = np.asarray(accept)[np.arange(n), lengths - 1].astype(np.int64)       # [N, n_outputs]
    n_out = acc_all.shape[1]
    tgt_all = None if targets is None else np.asarray(targets)[np.arange(n), lengths - 1].astype(np.int64)
    if tgt_all is not None and (tgt_all.min() < 0 or tgt_all.max() >= n_out):
        raise ConfigError(f"task: targets must lie in [0, {n_out})")
    weights, tweights = [], []
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
            if tgt_all is not None:
                tw = np.zeros((n_out, nb * block), np.int32)
                np.add.at(tw, (tgt_all[done], pos[done]), 1)
                tweights.append(tw)
    return Plan(int(vocab), int(block), tuple(blocks), tuple(block_words), tuple(parents), tuple(end_levels),
                np.concatenate(order), int(n_prefixes), tuple(weights),
                None if tgt_all is None else tuple(tweights))


_PLANS: dict[str, Plan] = {}


# ----------------------------------------------------------------------------- packed parameters


def pack_layout(spec: ModelSpec, input_dim: int, hidden: int) -> tuple:
    """(key, shape) of every tensor in a packed chunk, in order: the cell's tensors, the readout,
    the embedding transposed to [E, V] (static: part of the compiled kernel's key)."""
    out = []
    for path, shape, _, _ in tensor_plan(spec, input_dim, hidden):
        shape = tuple(int(d) for d in shape)
        if path == ("emb",):
            shape = shape[::-1]
        out.append(("/".join(path), shape))
    return tuple(out)


def pack_draws(spec: ModelSpec, tree: dict, layout: tuple) -> np.ndarray:
    """Drawn (padded) trees, leaves [C, ...], as ONE [n_values, C] array of the kernel's dtype,
    model axis minor: one transfer per chunk, and no transposes inside the kernel. A leaf whose
    shape is not the layout's is a ValueError (the kernel would read it wrongly)."""
    parts = []
    for key, shape in layout:
        node = tree
        for k in key.split("/"):
            node = node[k]
        a = np.asarray(node)
        got = tuple(a.shape[1:])
        if (got[::-1] if key == "emb" else got) != shape:
            raise ValueError(f"packing parameters: {key} has shape {got}, the layout wants {shape}")
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


def _evaluate_chunk_impl(spec, hidden, plan_key, fast, layout, flat, go, loss=None):
    """Number of correctly classified sequences for every model of a packed chunk (flat
    [n_values, C]); with `loss` ("xent" or "sse", the plan made with targets) also the loss
    summed over the sequences: (correct [C], loss [C]). States are [S, block, slot, C] per level
    (see the module's docstring); the plan's index arrays are constants of the compiled kernel."""
    plan = _PLANS[plan_key]
    cell = spec.cell_def
    pc, x, w_out, b_out = _unpack(spec, layout, flat)
    chunk = flat.shape[-1]
    prepare, level = _level_fns(cell, fast, go)
    xw = prepare(pc, x)
    s_dim = cell.state_mult * hidden
    k = plan.block
    correct = jnp.zeros((chunk,), jnp.int32)
    total = jnp.zeros((chunk,), spec.jdtype)
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
            logits = _logits(spec, hidden, state.reshape(s_dim, -1, chunk), w_out, b_out)
            correct = correct + _count_correct(logits, plan.weights[j])
            if loss is not None:
                total = total + _loss_sum(loss, logits, plan.target_weights[j])
    return correct if loss is None else (correct, total)


def _compiler_options() -> dict:
    """On a CPU, let XLA vectorise 512 bits wide where the machine has AVX-512: the step loop is
    bound by instruction count, and on the 2-core AVX-512 machine of benchmarks/ this took GRU(4,4)
    from ~5k to ~7.8k models/s per core (LLVM falls back to narrower vectors elsewhere)."""
    return {"xla_cpu_prefer_vector_width": 512} if jax.default_backend() == "cpu" else {}


_KERNELS: dict = {}
#: ... and for the population passes (compiled per experiment shard, run ~400 times): XLA's fusion
#: emitters off compiled them ~1/3 faster at the same run time (GRU(4,4) and GRU(4,16), 96 models:
#: 1.48 -> 0.97 s and 2.01 -> 1.40 s, cold; the random-draw kernel runs 0-15% slower that way)
POPULATION_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


def _jitted(population: bool = False):
    backend = jax.default_backend()
    key = (backend, population)
    if key not in _KERNELS:
        opts = _compiler_options()
        if population and backend == "cpu":
            opts = dict(opts, **POPULATION_OPTIONS)
        _KERNELS[key] = jax.jit(_evaluate_chunk_impl, static_argnames=("spec", "hidden", "plan_key", "fast",
                                                                        "layout", "loss"),
                                compiler_options=opts)
    return _KERNELS[key]


def _logits(spec, hidden, final, w_out, b_out) -> list:
    """Outputs [P, C] (one per output unit) from the states [S, P, C] of one level's positions:
    the readout written as unrolled multiply-adds over the few hidden units, in the state's own
    layout (one elementwise loop; as a [C, N, H] x [C, O, H] contraction XLA made it a
    tiny-matrix call costing up to a fifth of a chunk)."""
    s_dim = final.shape[0]
    seen = np.asarray(spec.cell_def.hidden_of(np.arange(s_dim), hidden)).reshape(-1)   # state rows the readout reads
    logits = []
    for o in range(w_out.shape[0]):
        acc = sum(final[int(r)] * w_out[o, k][None, :] for k, r in enumerate(seen))
        if b_out is not None:
            acc = acc + b_out[o][None, :]
        logits.append(acc)                                                     # [P, C]
    return logits


def _count_correct(logits: list, weights):
    """Correct sequences per model [C], scored with the plan's per-position weights (how many
    sequences end there accepting each output), so no state is gathered. argmax semantics
    kept: the first maximal output wins, NaN counts as maximal."""
    pred = jnp.zeros(logits[0].shape, jnp.int32)
    best = logits[0]
    for o in range(1, len(logits)):
        better = (logits[o] > best) | (jnp.isnan(logits[o]) & ~jnp.isnan(best))
        pred = jnp.where(better, o, pred)
        best = jnp.where(better, logits[o], best)
    ok = sum(jnp.where(pred == o, weights[o][:, None], 0) for o in range(len(logits)))
    return jnp.sum(ok, axis=0)


def _loss_sum(loss: str, logits: list, tweights):
    """The loss summed over the sequences ending at one level, per model [C], with the plan's
    per-position target counts: the per-sequence loss of ``engine.population`` (xent: softmax
    cross-entropy, log-softmax computed per position as there; sse: squared error against the
    one-hot target) times how many sequences end there with each target."""
    n_out = len(logits)
    if loss == "xent":
        top = logits[0]
        for o in range(1, n_out):
            top = jnp.maximum(top, logits[o])
        top = jax.lax.stop_gradient(top)
        shifted = [lg - top for lg in logits]
        ls = jnp.log(sum(jnp.exp(x) for x in shifted))
        per = [ls - x for x in shifted]                                        # -log p(o), [P, C]
    elif loss == "sse":
        per = [sum((lg - (1.0 if o == t else 0.0)) ** 2 for o, lg in enumerate(logits)) for t in range(n_out)]
    else:
        raise ConfigError(f"loss: unknown loss {loss!r}; known: xent, sse")
    return jnp.sum(sum(per[t] * tweights[t][:, None].astype(per[t].dtype) for t in range(n_out)), axis=0)


_FAST: dict = {}


def _fast_path_ok(spec: ModelSpec, input_dim: int, hidden: int) -> bool:
    """Does the cell's step traced with trailing batch axes equal its vmapped step? (Cached.)
    True without checking for the built-in cells (which cannot be replaced): every one of them
    passes :func:`_check_fast` (tests/test_prefix_eval.py checks it), and the check compiles
    both steps, ~0.6 s of every kernel's ~1.4 s cold first call."""
    k = (spec, input_dim, hidden)
    if k not in _FAST:
        _FAST[k] = spec.cell in cells.BUILTIN or _check_fast(spec, input_dim, hidden)
    return _FAST[k]


def _check_fast(spec: ModelSpec, input_dim: int, hidden: int) -> bool:
    """One level of the fast path against the vmapped step, on random states laid out as in the
    kernel (more blocks than words, several slots per block, 3 models)."""
    cell = spec.cell_def
    layout = pack_layout(spec, input_dim, hidden)
    rng = np.random.default_rng(1)
    n_values = sum(int(np.prod(shape)) for _, shape in layout)
    flat = (0.5 * rng.standard_normal((n_values, 3))).astype(spec.dtype)
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


# ----------------------------------------------------------------------------- trained populations


#: models per compiled call of a population pass (the last call zero-padded), or the next power
#: of two above a smaller population's size. Measured (2 streams, GRU(4, h), 256 models): 32
#: was within 5% of the best of 16-128 at h = 4, 8 and 16; 128 ran GRU(4, 16) 15-20% slower
#: (its states outgrow the cache)
EVAL_CHUNK = 32
EVALS = ("auto", "prefix", "vmap")


def eval_mode() -> str:
    """RNNLAB_EVAL: auto (the prefix kernel wherever the data allow it), prefix (required: an
    error where the data do not allow it) or vmap (always ``engine.population.evaluate``)."""
    import os
    want = os.environ.get("RNNLAB_EVAL", "auto").strip().lower() or "auto"
    if want not in EVALS:
        raise ConfigError(f"RNNLAB_EVAL: unknown evaluation kernel {want!r}; known: {', '.join(EVALS)}")
    return want


_POP_KERNELS: dict = {}
_POP_LOCK = threading.Lock()


class PopulationEval:
    """Per-model (mean loss, accuracy) of populations on one classification data set through the
    prefix kernel: the numbers ``engine.population.evaluate`` returns (the same definitions: the
    loss averaged over the sequences, the fraction of sequences whose argmax output is accepted),
    up to float rounding of the loss; accuracies are exact counts.

    One kernel serves every call: models at the padded sizes (emax, hmax), `chunk` models per
    compiled call (the last call zero-padded), compiled once per process for these shapes
    (shared by every evaluator of the same spec, data and shapes, e.g. the shards of one
    experiment). A population that shrinks as its models stop passes fewer models, not a new
    layout: a pass costs ~1% of an epoch, a compilation ~1 s.

    >>> ev = PopulationEval(spec, data["val"], "xent", emax=4, hmax=16, models=96)
    >>> loss, acc = ev(params, mask)      # leaves [M, ...] padded to (emax, hmax), any M
    """

    def __init__(self, spec: ModelSpec, data, loss: str, emax: int, hmax: int, models: int):
        if loss not in ("xent", "sse"):
            raise ConfigError(f"loss: unknown loss {loss!r}; known: xent, sse")
        self.spec, self.loss, self.n = spec, loss, len(data)
        self.emax, self.hmax = int(emax), int(hmax)
        from .train import _pow2       # (engine.train imports this module)
        self.chunk = min(EVAL_CHUNK, _pow2(models))
        self.plan = prefix_plan(data.tokens, data.lengths, data.target_mask, data.accept, spec.vocab,
                                targets=data.targets)
        self.plan_key = self.plan.key()
        _PLANS.setdefault(self.plan_key, self.plan)
        self.layout = pack_layout(spec, self.emax, self.hmax)
        self._go = jnp.asarray(True)

    def _kernel(self, part):
        key = (jax.default_backend(), self.spec, self.plan_key, self.emax, self.hmax, self.chunk, self.loss)
        with _POP_LOCK:
            if key not in _POP_KERNELS:
                if len(_POP_KERNELS) >= 64:          # a long session: keep the memory bounded
                    _POP_KERNELS.clear()
                fast = _fast_path_ok(self.spec, self.emax, self.hmax)
                _POP_KERNELS[key] = _jitted(True).lower(self.spec, self.hmax, self.plan_key, fast, self.layout, part,
                                                        self._go, self.loss).compile()
            return _POP_KERNELS[key]

    @x64
    def __call__(self, params, mask):
        """(mean loss, accuracy), NumPy arrays [M] of the spec's dtype, of the models `params`
        (leaves [M, ...] at the padded sizes (emax, hmax)) under `mask`."""
        pm = jax.tree_util.tree_map(lambda p, m: np.asarray(p) * np.asarray(m), params, mask)
        flat = pack_draws(self.spec, pm, self.layout)                                # [n_values, M]
        m, chunk = flat.shape[1], self.chunk
        n_chunks = max(1, -(-m // chunk))
        if n_chunks * chunk > m:
            flat = np.concatenate([flat, np.zeros((flat.shape[0], n_chunks * chunk - m), flat.dtype)], axis=1)
        parts = [np.ascontiguousarray(flat[:, i * chunk:(i + 1) * chunk]) for i in range(n_chunks)]
        kern = self._kernel(parts[0])

        @x64                  # (a thread starts with JAX's global setting)
        def one(part):
            correct, total = kern(part, self._go)
            return np.asarray(correct), np.asarray(total)
        if n_chunks == 1:
            outs = [one(parts[0])]
        else:
            with ThreadPoolExecutor(max(1, min(n_streams(), n_chunks)), thread_name_prefix="rnnlab-prefix") as pool:
                outs = list(pool.map(one, parts))
        correct = np.concatenate([o[0] for o in outs])[:m]
        total = np.concatenate([o[1] for o in outs])[:m]
        dt = np.dtype(self.spec.dtype)
        n = dt.type(self.n)
        return total.astype(dt) / n, correct.astype(dt) / n


#: RNNLAB_EVAL=auto takes the prefix kernel for a training run when its work, models x sequences
#: x passes (at most max_epochs + 1) x max(1, hidden / 4), reaches this: below it, compiling the
#: kernel costs more than it saves. Measured cold, one core, First's 2000 validation sequences:
#: a first call costs 0.8-1.1 s against population.evaluate's 0.3-0.5 s, and a pass saves 0.4 us
#: (RNN-tanh(4, 4)), 1.4 us (GRU(4, 4)) to 5 us (GRU(4, 16)) per model and sequence; most runs
#: stop well before max_epochs. capacity-inits at quick scale (16-model shards, hidden <= 4:
#: ~5e6) ran 35 -> 40 s with the prefix kernel (cold), at paper scale (60-model shards: ~2e7)
#: 108-114 -> 107-110 s cold and 90 -> 75 s with the compilation cache warm. A run of the test
#: suite's size comes to ~1e4-1e5
MIN_WORK = 10_000_000


def population_eval(spec: ModelSpec, data, loss: str, emax: int, hmax: int, models: int,
                    passes: int | None = None) -> PopulationEval | None:
    """The prefix evaluator of `data` (see :func:`eval_mode`), or None where ``engine.population.
    evaluate`` must (or, under RNNLAB_EVAL=auto, should) do: the data are not a classification
    set (a sequence scored elsewhere than at its end, or more than once), RNNLAB_EVAL=vmap, or
    (auto) the run's work (see :data:`MIN_WORK`) is below :data:`MIN_WORK`."""
    mode = eval_mode()
    if mode == "vmap":
        return None
    if mode == "auto" and passes is not None and \
            int(models) * len(data) * int(passes) * max(1.0, hmax / 4) < MIN_WORK:
        return None
    try:
        return PopulationEval(spec, data, loss, emax, hmax, models)
    except ConfigError:
        if mode == "prefix":
            raise
        return None


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
    from .train import _cpus
    return max(1, min(_cpus(), 4))
