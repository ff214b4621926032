"""The lane-minor epoch kernel: one compiled epoch for a population of tiny models with the
model axis innermost.

Why. The papers' models are tiny (hidden 2-16, input 2-16, batch 32). With models first
(``vmap`` over models, :func:`engine.train.train_epoch`), every step of the recurrence is a
batch of [B, H] x [H, 3H] products that XLA:CPU runs as many small dot kernels with half-empty
vector lanes. Here every array of an epoch is laid out ``[cell axes..., batch, M]``: the M
models of the population fill the vector lanes, and a step of the recurrence is a few
elementwise loops over [3H, B, M] (cells are traced with :func:`cells.base.trailing_batch`,
matvec as multiply-and-reduce over the contracted axis).

What was measured (benchmarks/train_population.py, GRU(4,4), 96 models, 8000 sequences of the
First task, one core): the models-first epoch 1.3-2.9 s, this kernel 0.7-1.6 s.
- XLA:CPU's YNNPACK reduce fusions ran the small reductions at ~0.25 G elements/s; this
  kernel's jit turns them off (a per-function compiler option, no global flag): ~10x faster
  inner loops.
- Autodiff through ``lax.scan`` over the T steps beat a full unroll (compile time and run time)
  and beat the unrolled multiply-add matvec (its transpose is slices and pads).
- The per-lane gather of the input projections beat a one-hot select-and-sum.
- Batch orders: ``jax.random.permutation`` sorts in XLA (~20% of an epoch); the same
  permutations come from NumPy's stable argsort of the same random bits (:func:`batch_orders`,
  tested equal to jax.random.permutation). engine.train.run_epoch has each shard draw its own
  models' orders, so the cores draw them at once (epochs 6-12% faster than one core drawing all
  before the epoch), and on the CPU the models-first epoch takes them too (1.03-1.17x).

Tried and measured slower (GRU(4,4), 8 and 48 models, one Mehta epoch of First, one core,
December 7): a hand-written backward pass through time for rnn-tanh/rnn-sigmoid/gru/gru-s in
this layout (gradients equal to autodiff's to 1e-15 in float64, but 0.2-1.06x autodiff's speed:
XLA:CPU fused each backward quantity into every loop that reads it and recomputed it there, its
optimization barriers being dropped on CPU, and concatenated gate blocks cost the vector lanes);
``jax.checkpoint`` on the step (0.35 -> 0.92 s); the input gather's transpose as per-token sums
instead of XLA's scatter (1.6x faster alone, 10-20% slower inside the epoch); gathering the
embedding (E wide) and projecting it inside the epoch instead of gathering the projected table
(3H wide), so that the gradient scatters E values, not 3H (December 8, GRU(4,4), 96 models, one
core each side by side, both ways round: 0.65x; in a hand-written C prototype of this epoch the
same change was a 1.8x gain, the scatter being its main cost). The profile of
the autodiff epoch (XLA's trace): ~1/3 the two scans, ~1/4 the input projections' gradient
(scatter-add and transposes), the rest per-batch gathers, the update and copies.

The kernel computes what :func:`engine.train.train_epoch` computes (same batch orders, loss,
Adam/SGD update, divergence freeze), per model independently; tests check the two agree
(float64: 1e-12) and :func:`usable` checks a cell traces correctly this way before it is used
(plugin cells that do not fall back to the models-first epoch).
"""
from __future__ import annotations

import threading
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._jaxcfg import SMALL_OPTIONS, jit
from .. import cells
from ..cells import base as cb
from . import model as mdl
from .protocols import Protocol

#: XLA:CPU compiler options of the kernel (per jit; nothing global)
CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def _reduce_matvec(_f, w, v):
    """matvec with trailing batch axes as multiply-and-reduce over the contracted axis."""
    return jnp.sum(w * v[None], axis=1)


def _lanes(tree):
    return jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 0, -1), tree)


def _models_first(tree):
    return jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, -1, 0), tree)


# ----------------------------------------------------------------------------- batch orders

def _rounds(n: int) -> int:
    """Sorting rounds of jax.random.permutation for n elements (jax/_src/random/core.py)."""
    return int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))


@partial(jit, static_argnames=("n", "rounds"))
def _order_bits(keys, epoch, n: int, rounds: int):
    def one(k):
        k = jax.random.fold_in(k, epoch)
        out = []
        for _ in range(rounds):
            k, sub = jax.random.split(k)
            out.append(jax.random.bits(sub, (n,), jnp.uint32))
        return jnp.stack(out)
    return jax.vmap(one)(keys)


#: keys go to :func:`_order_bits` in blocks of this many (the last one padded): one compiled
#: program per sequence count, whatever the population size (a compacted population would
#: otherwise compile it again for every size)
KEY_BLOCK = 8


def _bits(keys, epoch: int, n: int, rounds: int) -> np.ndarray:
    """[M, rounds, n] random bits of every key, as :func:`_order_bits` draws them for all keys
    at once (the draws of a key do not depend on the other keys)."""
    keys = np.asarray(keys)
    m = keys.shape[0]
    pad = -m % KEY_BLOCK
    if pad:
        keys = np.concatenate([keys, np.repeat(keys[-1:], pad, axis=0)])
    out = [np.asarray(_order_bits(keys[i:i + KEY_BLOCK], epoch, n, rounds))
           for i in range(0, len(keys), KEY_BLOCK)]
    return np.concatenate(out)[:m]


def permutations(keys, epoch: int, n: int) -> np.ndarray:
    """[M, n]: ``jax.random.permutation(jax.random.fold_in(key, epoch), n)`` of every key, by
    NumPy stable argsorts of the same random bits (one XLA sort per round is slower)."""
    rounds = _rounds(n)
    idx = np.broadcast_to(np.arange(n, dtype=np.int32), (int(np.shape(keys)[0]), n))
    if rounds == 0:
        return idx.copy()
    bits = _bits(keys, epoch, n, rounds).astype(np.uint64)
    pos = np.arange(n, dtype=np.uint64)
    for r in range(rounds):
        # a stable sort by the bits = a sort of (bits, position) pairs, packed into one uint64
        # (np.sort of integers is vectorised; a stable argsort was 5x slower)
        o = (np.sort((bits[:, r] << np.uint64(32)) | pos, axis=1) & np.uint64(0xFFFFFFFF)).astype(np.intp)
        idx = np.take_along_axis(idx, o, axis=1)
    return idx


def batch_orders(keys, epoch: int, n: int, n_batches: int, batch: int, shuffle: bool) -> np.ndarray:
    """[M, n_batches, batch] sequence indices of every model's epoch (the tail padded with 0,
    weight 0), as engine.train.train_epoch orders them."""
    m = int(np.shape(keys)[0])
    idx = permutations(keys, epoch, n) if shuffle else np.broadcast_to(np.arange(n, dtype=np.int32), (m, n))
    out = np.zeros((m, n_batches * batch), np.int32)
    out[:, :n] = idx
    return out.reshape(m, n_batches, batch)


# ----------------------------------------------------------------------------- the epoch

def _gather(table, tok):
    """table [G, V, M], tok [T, B, M] -> [T, G, B, M] (each model reads its own table)."""
    return jax.vmap(lambda a, i: a[:, i], in_axes=(2, 2), out_axes=3)(table, tok).transpose(1, 0, 2, 3)


def _batch(spec, loss: str, hmax: int, positions, full_length: bool, lp, lm, tok, ln, tg, tm, ac, w):
    """Sum over models of each model's weighted mean batch loss, and per model (loss, correct,
    counted). Lane layout: tok [T, B, M], ln [B, M], tg/tm [P, B, M], ac [P, O, B, M], w [B]."""
    cell = spec.cell_def
    p = jax.tree_util.tree_map(lambda a, b: a * b, lp, lm)
    table = jax.vmap(lambda q: mdl.input_table(spec, q), in_axes=-1, out_axes=-1)(p)   # [V, G, M]
    gis = _gather(jnp.swapaxes(table, 0, 1), tok)                                       # [T, G, B, M]
    T, _, B, M = gis.shape
    pc = jax.tree_util.tree_map(lambda a: a[..., None, :], p["cell"])                   # [..., 1, M]
    s0 = jnp.zeros((cell.state_mult * hmax, B, M), gis.dtype)

    def body(s, inp):
        g, t = inp
        with cb.trailing_batch(hook=_reduce_matvec):
            s_new = cell.step_proj(pc, s, g)
        s = s_new if full_length else jnp.where(t < ln, s_new, s)
        return s, s
    _, states = jax.lax.scan(body, s0, (gis, jnp.arange(T)))                            # [T, S, B, M]
    states = states[np.asarray(positions)] if positions else states
    h = states[:, :hmax]                                                                # [P, H, B, M]
    out = jnp.sum(p["out"]["W"][None, :, :, None, :] * h[:, None], axis=2)            # [P, O, B, M]
    if spec.out_bias:
        out = out + p["out"]["b"][None, :, None, :]
    if loss == "xent":
        logp = jax.nn.log_softmax(out, axis=1)
        per = -jnp.take_along_axis(logp, tg[:, None], axis=1)[:, 0]
    else:
        onehot = jax.nn.one_hot(tg, out.shape[1], dtype=out.dtype, axis=1)
        per = jnp.sum((out - onehot) ** 2, axis=1)
    pred = jnp.argmax(out, axis=1)
    ok = jnp.take_along_axis(ac, pred[:, None], axis=1)[:, 0]
    per_seq, corr, cnt = jnp.sum(per * tm, 0), jnp.sum(ok * tm, 0), jnp.sum(tm, 0)    # [B, M]
    wsum = jnp.maximum(jnp.sum(w), 1.0)
    loss_m = jnp.sum(per_seq * w[:, None], 0) / wsum
    return jnp.sum(loss_m), (loss_m, jnp.sum(corr * w[:, None], 0), jnp.sum(cnt * w[:, None], 0))


class Flat:
    """Every parameter of a model in one vector: a parameter tree packs to [P] (one model),
    [M, P] (models first) or [P, M] (lane layout) and back. The optimizer update, the
    finiteness checks and the divergence selects of an epoch then run as a few loops over one
    array instead of a few per tensor (a GRU has 6): the lane epoch of GRU(4,4) has 91 kernels
    instead of 111. Measured (8 programs each, 5-12 models, First, one core): compiling the lane
    epoch 16% faster for GRU(4,4) and 3% for rnn-tanh(2,2), the models-first epoch
    (engine.train.train_epoch) 17% faster for GRU(8,8); the epochs themselves within noise.
    XLA fuses the one-array update differently, so float32 parameters can differ in the last
    bit from a per-tensor update (measured after 3 epochs: 2.4e-7; in float64, 4.4e-16)."""

    def __init__(self, tree, axis: int | None):
        leaves, self.treedef = jax.tree_util.tree_flatten(tree)
        self.shapes = [tuple(np.delete(np.shape(a), axis)) if axis is not None else tuple(np.shape(a))
                       for a in leaves]
        self.sizes = [int(np.prod(s, dtype=int)) for s in self.shapes]

    def pack(self, tree, axis: int | None):
        """[P], [M, P] (axis 0) or [P, M] (axis -1)."""
        leaves = jax.tree_util.tree_leaves(tree)
        if axis is None:
            return jnp.concatenate([a.reshape(-1) for a in leaves])
        if axis == 0:
            return jnp.concatenate([a.reshape(a.shape[0], -1) for a in leaves], 1)
        return jnp.concatenate([a.reshape(-1, a.shape[-1]) for a in leaves], 0)

    def unpack(self, flat, axis: int | None):
        cut = np.cumsum(self.sizes)[:-1]
        if axis is None:
            parts = [a.reshape(s) for a, s in zip(jnp.split(flat, cut), self.shapes)]
        elif axis == 0:
            parts = [a.reshape((flat.shape[0],) + s) for a, s in zip(jnp.split(flat, cut, axis=1), self.shapes)]
        else:
            parts = [a.reshape(s + (flat.shape[-1],)) for a, s in zip(jnp.split(flat, cut, axis=0), self.shapes)]
        return jax.tree_util.tree_unflatten(self.treedef, parts)

    def _is_params(self, x):
        return jax.tree_util.tree_structure(x) == self.treedef

    def pack_state(self, state, axis: int | None):
        """An optimizer state with every parameter-shaped subtree (Adam's moments) packed."""
        return jax.tree_util.tree_map(lambda x: self.pack(x, axis) if self._is_params(x) else x, state,
                                      is_leaf=self._is_params)

    def unpack_state(self, state, like, axis: int | None):
        """Undo :meth:`pack_state`; `like` is the state before packing (for its structure)."""
        return jax.tree_util.tree_map(lambda x, y: self.unpack(x, axis) if self._is_params(y) else x,
                                      state, like)


def _epoch(spec, protocol: Protocol, hmax: int, n_batches: int, params, opt_state, mask, lr, active,
           orders, data, positions=None, full_length=False):
    """One epoch of every model; arguments and results as engine.train.train_epoch, with the
    batch orders [M, n_batches, B] (see :func:`batch_orders`) in place of the keys."""
    positions = tuple(positions) if positions else None
    vg = jax.value_and_grad(partial(_batch, spec, protocol.loss, hmax, positions, full_length), has_aux=True)

    def grad(*args):
        (_, aux), g = vg(*args)
        return aux, g
    return epoch_with(grad, protocol, n_batches, params, opt_state, mask, lr, active, orders, data, positions)


def epoch_with(grad, protocol: Protocol, n_batches: int, params, opt_state, mask, lr, active, orders, data,
               positions=None):
    """The epoch in lane layout around a batch gradient ``grad(p, mask, tok [T, B, M], ln [B, M],
    tg [P, B, M], tm [P, B, M], ac [P, O, B, M], w [B]) -> ((loss, correct, counted) per model,
    gradient)`` (this module's autodiff of :func:`_batch`, or engine.ragged's hand-written
    pass): batch gathers, Adam/SGD update, divergence freeze and the epoch's sums."""
    positions = tuple(positions) if positions else None
    n = data["tokens"].shape[0]
    b = protocol.batch_size
    pos = np.asarray(positions) if positions else None
    idx = orders.transpose(1, 2, 0)                                      # [nb, B, M]
    toks = data["tokens"][idx].transpose(0, 3, 1, 2)                     # [nb, T, B, M]
    lens = data["lengths"][idx]                                          # [nb, B, M]
    tg, tm, ac = data["targets"], data["target_mask"], data["accept"]
    if pos is not None:
        tg, tm, ac = tg[:, pos], tm[:, pos], ac[:, pos]
    tgs = tg[idx].transpose(0, 3, 1, 2)                                  # [nb, P, B, M]
    tms = tm[idx].transpose(0, 3, 1, 2)
    acs = ac[idx].transpose(0, 3, 4, 1, 2)                               # [nb, P, O, B, M]
    w = (jnp.arange(n_batches * b) < n).astype(lr.dtype).reshape(n_batches, b)
    lp, lm = _lanes(params), _lanes(mask)
    flat = Flat(lp, -1)
    lo0 = _lanes(opt_state)
    lo = flat.pack_state(lo0, -1)
    adam = optax.scale_by_adam()

    def step(carry, inp):
        pf, o, alive, lsum, csum, nsum = carry
        tok, ln, tg_, tm_, ac_, wt = inp
        (loss_m, corr, cnt), g = grad(flat.unpack(pf, -1), lm, tok, ln, tg_, tm_, ac_, wt)
        g = flat.pack(g, -1)
        if protocol.optimizer == "adam":
            upd, o2 = adam.update(g, o)
        else:
            upd, o2 = g, o
        p2 = pf - lr * upd
        ok = (alive & jnp.isfinite(loss_m) & (loss_m < protocol.max_loss)
              & jnp.all(jnp.isfinite(g), 0) & jnp.all(jnp.isfinite(p2), 0))
        sel = lambda x, y: jnp.where(ok, x, y)                           # noqa: E731
        pf, o = sel(p2, pf), jax.tree_util.tree_map(sel, o2, o)
        wsum = jnp.sum(wt)
        return (pf, o, ok, lsum + jnp.where(ok, loss_m * wsum, 0.0), csum + jnp.where(ok, corr, 0.0),
                nsum + jnp.where(ok, cnt, 0.0)), None

    z = jnp.zeros_like(lr)
    (pf, lo, alive, lsum, csum, nsum), _ = jax.lax.scan(
        step, (flat.pack(lp, -1), lo, active, z, z, z), (toks, lens, tgs, tms, acs, w))
    return (_models_first(flat.unpack(pf, -1)), _models_first(flat.unpack_state(lo, lo0, -1)), alive, lsum / n,
            csum / jnp.maximum(nsum, 1.0))


_STATIC = ("spec", "protocol", "hmax", "n_batches", "positions", "full_length")

#: populations of at most this many models compile the kernel with XLA's fusion emitters off
#: (:data:`rnnlab._jaxcfg.CPU_OPTIONS`) and 128-bit vectors (:data:`rnnlab._jaxcfg.SMALL_OPTIONS`).
#: Measured (one core, cold, GRU(4,4), one Mehta epoch of First, fusion emitters): compile 4.1 -> 2.8 s at M=4 and 5.0 -> 3.5 s at M=64, epoch +16% at M=16 and M=64;
#: a small population stops within tens of epochs, so the compile it saves outweighs what it
#: loses (trainability-grid at quick, one core: 72 -> 55 s), a large one runs long enough to lose.
FAST_COMPILE_MAX_MODELS = 16
_SMALL = jit(_epoch, static_argnames=_STATIC, cpu_options=dict(CPU_OPTIONS, **SMALL_OPTIONS))
_LARGE = jit(_epoch, static_argnames=_STATIC, cpu_options=CPU_OPTIONS, fast_compile=False)


def lane_epoch(*args, **kw):
    """The compiled :func:`_epoch` (with the CPU compiler options on a CPU backend)."""
    m = int(np.shape(args[7] if len(args) > 7 else kw["lr"])[0])
    return (_SMALL if m <= FAST_COMPILE_MAX_MODELS else _LARGE)(*args, **kw)


# ----------------------------------------------------------------------------- which cells

_USABLE: dict = {}
_USABLE_LOCK = threading.Lock()


def usable(spec, hmax: int) -> bool:
    """Whether `spec`'s cell runs in the lane kernel: a split cell whose readout sees the first
    `hidden` state entries, whose step_proj traced with trailing batch axes equals the vmapped
    step_proj on random inputs (bare ``@`` or axis-dependent code fails and falls back)."""
    cell = spec.cell_def
    if not cell.split or type(cell).hidden_of is not cb.Cell.hidden_of:
        return False
    if spec.cell in cells.BUILTIN and cell.parallel is None:
        # rnnlab's own cells pass (tests/test_lanes.py runs the check on each of them): the check
        # compiles ~0.5 s per (cell, size), ~20 s of CPU over a quick reproduction
        return True
    key = (spec, int(hmax))
    with _USABLE_LOCK:
        if key not in _USABLE:
            _USABLE[key] = _check(spec, int(hmax))
        return _USABLE[key]


def _check(spec, hmax: int) -> bool:
    cell = spec.cell_def
    e = spec.vocab if not spec.embed else max(2, hmax)
    m, b = 3, 2
    rng = np.random.default_rng(0)
    trees = [mdl.init_params_np(spec, i, e, hmax) for i in range(m)]
    pc = jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs), spec.jdtype), *[t["cell"] for t in trees])
    x = jnp.asarray(rng.standard_normal((m, b, e)), spec.jdtype)
    s = jnp.asarray(rng.standard_normal((m, b, cell.state_mult * hmax)), spec.jdtype)
    try:
        ref = jax.vmap(lambda p, xs, ss: jax.vmap(lambda xi, si: cell.step_proj(p, si, cell.input_proj(p, xi)))(xs, ss))(
            pc, x, s)                                                                     # [M, B, S]

        def lane(p, xs, ss):
            g = jax.vmap(lambda q, xi: jax.vmap(lambda xj: cell.input_proj(q, xj))(xi), in_axes=(-1, -1),
                         out_axes=-1)(p, xs)                                              # [B, G, M]
            with cb.trailing_batch(hook=_reduce_matvec):
                return cell.step_proj(jax.tree_util.tree_map(lambda a: a[..., None, :], p),
                                      ss, jnp.swapaxes(g, 0, 1))
        got = jax.jit(lane)(_lanes(pc), jnp.moveaxis(x, 0, -1), jnp.moveaxis(s, 0, -1).swapaxes(0, 1))
    except (TypeError, ValueError, IndexError):
        return False
    got = jnp.moveaxis(got, -1, 0).swapaxes(1, 2)                                         # [M, B, S]
    tol = 1e-5 if spec.dtype == "float32" else 1e-12
    return got.shape == ref.shape and bool(jnp.allclose(got, ref, rtol=tol, atol=tol))
