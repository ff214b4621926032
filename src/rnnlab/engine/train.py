"""Train a population: every model has its own batch order, optimizer state, learning rate,
schedule, stopping and best checkpoint. A model that stops, or whose loss/gradients turn
non-finite, is frozen (and a diverged one recorded with its epoch); the others go on.

One compiled function runs a whole epoch for a whole population (``lax.scan`` over batches),
one of three kernels (:func:`engine_kind`): engine.ragged for Sterin's one-string-a-step SGD
(each step loops only as far as its longest string), engine.lanes' kernel with the model axis
innermost for small hidden sizes of every cell that traces that way (the built-in cells but
minGRU), else :func:`train_epoch` (``vmap`` over models). The per-epoch bookkeeping (schedule,
stopping, curves) is NumPy on [M]; the validation pass after each epoch runs through
engine.prefix on classification data (shared prefixes, models on the vector lanes) when the run
is large enough to pay for its compilation, else through population.evaluate; the test split is
measured once, on the best checkpoints. On a multi-core CPU the population is cut into equal shards along the model axis that run
concurrently in threads (:func:`run_epoch`): XLA runs the small operations of one computation
on one core, and the models are independent, so each model computes exactly what it computes
alone.
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from .._jaxcfg import SMALL_OPTIONS, jit, x64
from ..progress import progress_bar
from ..errors import ConfigError
from . import lanes, prefix, ragged
from . import model as mdl
from .population import Population, at_positions, batch_loss, evaluate
from .protocols import Protocol

DATA_KEYS = ("tokens", "lengths", "targets", "target_mask", "accept")


@x64
def device_data(task_data, dtype) -> dict:
    """TaskData -> dict of device arrays used by the compiled functions."""
    return {"tokens": jnp.asarray(task_data.tokens, jnp.int32),
            "lengths": jnp.asarray(task_data.lengths, jnp.int32),
            "targets": jnp.asarray(task_data.targets, jnp.int32),
            "target_mask": jnp.asarray(task_data.target_mask, dtype),
            "accept": jnp.asarray(task_data.accept, dtype)}


def _tree_where(c, a, b):
    """Per-model select: c [M] bool, a and b trees with leading axis M."""
    return jax.tree_util.tree_map(
        lambda x, y: jnp.where(c.reshape((-1,) + (1,) * (x.ndim - 1)), x, y), a, b)


def _train_epoch(spec, protocol: Protocol, hmax: int, n_batches: int,
                 params, opt_state, mask, lr, active, keys, epoch, data, positions: tuple | None = None,
                 full_length: bool = False, orders=None):
    """One epoch for all models. Returns (params, opt_state, alive, mean_loss, train_acc).
    Static hints about the data (exact; see engine.model.scored_positions / full_length):
    positions - where data["target_mask"] can be non-zero (None: all), only those are read out
    and scored; full_length - every sequence fills all T positions. orders: each model's batch
    orders [M, n_batches, B] (lanes.batch_orders), or None to draw them here from keys and epoch
    (jax.random.permutation: the same orders)."""
    positions = positions or None
    data = at_positions(data, positions)
    n = data["tokens"].shape[0]
    b = protocol.batch_size
    total = n_batches * b

    def order(k):
        idx = jax.random.permutation(jax.random.fold_in(k, epoch), n) if protocol.shuffle else jnp.arange(n)
        idx = jnp.concatenate([idx, jnp.zeros((total - n,), idx.dtype)])
        return idx.reshape(n_batches, b)
    if orders is None:
        idx = jax.vmap(order)(keys).transpose(1, 0, 2)                   # [nb, M, B]
    else:                 # the same orders, drawn outside (lanes.batch_orders: [M, nb, B])
        idx = jnp.asarray(orders).transpose(1, 0, 2)
    w = (jnp.arange(total) < n).astype(lr.dtype).reshape(n_batches, b)  # [nb, B]

    adam = optax.scale_by_adam()
    lossf = partial(batch_loss, spec, protocol.loss, positions=positions, full_length=full_length)

    flat = lanes.Flat(params, 0)          # every parameter of a model in one vector (see there)

    def one_model(pf, o, m, ix, wt, lr_m):
        sel = {k: data[k][ix] for k in DATA_KEYS}
        (loss, (corr, cnt)), g = jax.value_and_grad(lossf, has_aux=True)(
            flat.unpack(pf, None), m, hmax, sel["tokens"], sel["lengths"], sel["targets"],
            sel["target_mask"], sel["accept"], wt)
        g = flat.pack(g, None)
        if protocol.optimizer == "adam":
            upd, o2 = adam.update(g, o)
        else:
            upd, o2 = g, o
        p2 = pf - lr_m * upd
        finite = (jnp.isfinite(loss) & (loss < protocol.max_loss) & jnp.all(jnp.isfinite(g))
                  & jnp.all(jnp.isfinite(p2)))
        return p2, o2, loss, corr, cnt, finite

    def step(carry, inp):
        params, opt_state, alive, lsum, csum, nsum = carry
        ix, wt = inp
        p2, o2, loss, corr, cnt, finite = jax.vmap(one_model, in_axes=(0, 0, 0, 0, None, 0))(
            params, opt_state, mask, ix, wt, lr)
        ok = alive & finite
        params = _tree_where(ok, p2, params)
        opt_state = _tree_where(ok, o2, opt_state)
        wsum = jnp.sum(wt)
        lsum = lsum + jnp.where(ok, loss * wsum, 0.0)
        csum = csum + jnp.where(ok, corr, 0.0)
        nsum = nsum + jnp.where(ok, cnt, 0.0)
        return (params, opt_state, ok, lsum, csum, nsum), None

    zeros = jnp.zeros_like(lr)
    (pf, of, alive, lsum, csum, nsum), _ = jax.lax.scan(
        step, (flat.pack(params, 0), flat.pack_state(opt_state, 0), active, zeros, zeros, zeros), (idx, w))
    return (flat.unpack(pf, 0), flat.unpack_state(of, opt_state, 0), alive, lsum / n,
            csum / jnp.maximum(nsum, 1.0))


_EPOCH_STATIC = ("spec", "protocol", "hmax", "n_batches", "positions", "full_length")
_EPOCH_SMALL = jit(_train_epoch, static_argnames=_EPOCH_STATIC, cpu_options=SMALL_OPTIONS)
_EPOCH_LARGE = jit(_train_epoch, static_argnames=_EPOCH_STATIC)


@x64
def train_epoch(spec, protocol: Protocol, hmax: int, n_batches: int,
                params, opt_state, mask, lr, active, keys, epoch, data, positions: tuple | None = None,
                full_length: bool = False, orders=None):
    """One epoch for all models (compiled; see :func:`_train_epoch`), with
    :data:`rnnlab._jaxcfg.SMALL_OPTIONS` for at most lanes.FAST_COMPILE_MAX_MODELS models."""
    small = int(np.shape(lr)[0]) <= lanes.FAST_COMPILE_MAX_MODELS
    return (_EPOCH_SMALL if small else _EPOCH_LARGE)(
        spec, protocol, hmax, n_batches, params, opt_state, mask, lr, active, keys, epoch, data,
        positions=positions, full_length=full_length, orders=orders)


#: a population is cut into shards only if each shard gets at least this many models
MIN_SHARD_MODELS = 8
_POOLS: dict[int, ThreadPoolExecutor] = {}


_SHARE = threading.local()


def _cpus() -> int:
    """Cores this thread may use: its share (see :func:`cpu_share`), else the process's."""
    share = getattr(_SHARE, "n", None)
    if share:
        return share
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@contextmanager
def cpu_share(n: int):
    """Within this thread, populations are cut into shards for `n` cores, run by thread pools
    of this context's own (the local backend runs several experiment shards at once, each
    with its share of the cores)."""
    prev = (getattr(_SHARE, "n", None), getattr(_SHARE, "pools", None))
    _SHARE.n, _SHARE.pools = int(n), {}
    try:
        yield
    finally:
        for pool in _SHARE.pools.values():
            pool.shutdown(wait=True)
        _SHARE.n, _SHARE.pools = prev


def n_shards(m: int) -> int:
    """How many concurrent shards a population of m models is cut into on this machine (1 on a
    single core, on a GPU, or for small populations; RNNLAB_SHARDS overrides)."""
    env = os.environ.get("RNNLAB_SHARDS")
    if env:
        return max(1, min(int(env), m))
    if jax.default_backend() != "cpu":
        return 1
    return max(1, min(_cpus(), 4, m // MIN_SHARD_MODELS))


_POOLS_LOCK = threading.Lock()


def _pool(n: int) -> ThreadPoolExecutor:
    """A pool of n threads: this thread's core share has its own, the process shares one."""
    own = getattr(_SHARE, "pools", None)
    pools = _POOLS if own is None else own
    with _POOLS_LOCK:
        if n not in pools:
            pools[n] = ThreadPoolExecutor(n, thread_name_prefix="rnnlab-shard")
        return pools[n]


def _host(tree):
    """A tree of host (NumPy) arrays. Between epochs the population lives on the host: the
    gathers, scatters and selects of the per-epoch bookkeeping are then NumPy, not one small XLA
    program compiled per array shape (measured: ~500 such compiles, ~10 s of capacity-inits'
    quick run, before this)."""
    return jax.tree_util.tree_map(np.asarray, tree)


def _host_where(c, a, b):
    """Per-model select on host trees: c [M] bool."""
    return jax.tree_util.tree_map(
        lambda x, y: np.where(c.reshape((-1,) + (1,) * (x.ndim - 1)), x, y), a, b)


def _pad_models(tree, pad: int):
    """Append `pad` copies of the last model along the leading axis (host arrays)."""
    if pad == 0:
        return tree
    return jax.tree_util.tree_map(lambda a: np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]), tree)


def sharded(fn, m: int, shards: int, per_model: tuple, inactive: int | None = None):
    """Run fn(*args) on `shards` equal slices of the model axis concurrently and concatenate
    the outputs. per_model: the positional arguments, each either ("m", tree with leading axis
    m) or ("s", value shared by all shards). The population is padded to a multiple of
    `shards` with copies of its last model (argument `inactive` is padded with False instead);
    the padding is cut off the outputs."""
    if shards <= 1:
        return fn(*(v for _, v in per_model))
    pad = -m % shards
    size = (m + pad) // shards
    args = []
    for i, (kind, v) in enumerate(per_model):
        if kind == "m":               # sliced on the host: no XLA program per slice shape
            v = _pad_models(_host(v), pad)
            if i == inactive and pad:
                v = v.copy()
                v[m:] = False
        args.append((kind, v))

    @x64                  # a thread starts with JAX's global setting: float64 again
    def one(j):
        a = [jax.tree_util.tree_map(lambda x: x[j * size:(j + 1) * size], v) if kind == "m" else v
             for kind, v in args]
        return jax.block_until_ready(fn(*a))
    outs = list(_pool(shards).map(one, range(shards)))
    return jax.tree_util.tree_map(lambda *xs: np.concatenate([np.asarray(x) for x in xs])[:m], *outs)


ENGINES = ("auto", "lanes", "ragged", "vmap")


#: the lane kernel trains populations padded to at most this hidden size under "auto": measured
#: (benchmarks/train_engine.py, earlier engine_lanes.py; 96 models, First, 2 cores) it beats the models-first
#: epoch at hidden 2 (1.6-1.9x) and 4 (1.3x) and loses at 8 (0.7-0.9x) and 16 (0.3-0.6x), where
#: its multiply-and-reduce matvec ([G*H, H, B, M] products) outgrows the dot kernels
LANES_MAX_HIDDEN = 4


#: "auto" trains Sterin's protocol with the ragged kernel in populations (or shards) of at most
#: this many models: measured (benchmarks/engine_ragged.py, embedded Reber, one core) it is
#: 1.5-2.5x faster at 1-6 models, ~1.1-1.3x at 10-16, and loses at 20 for rnn-sigmoid k=18
#: (0.75x), where the lane layout's multiply-and-reduce matvec outgrows the dot kernels
RAGGED_MAX_MODELS = 16


def engine_kind(spec, hmax: int, batch_size: int | None = None, full_length: bool = False,
                models: int | None = None) -> str:
    """Which epoch kernel trains `spec`: "ragged" (engine.ragged: loops as long as each step's
    longest sequence) when a batch holds one sequence (`batch_size` 1, Sterin's protocol) of
    ragged data (not `full_length`) for at most :data:`RAGGED_MAX_MODELS` `models`; "lanes"
    (engine.lanes, model axis innermost) when the cell passes lanes.usable and the padded hidden
    size is at most :data:`LANES_MAX_HIDDEN`; else "vmap" (:func:`train_epoch`).
    RNNLAB_ENGINE=vmap forces the models-first kernel; RNNLAB_ENGINE=lanes or =ragged forces
    that kernel whatever the sizes, and refuses a cell that cannot run in it."""
    want = os.environ.get("RNNLAB_ENGINE", "auto").strip().lower() or "auto"
    if want not in ENGINES:
        raise ConfigError(f"RNNLAB_ENGINE: unknown engine {want!r}; known: {', '.join(ENGINES)}")
    if want == "vmap":
        return "vmap"
    if want == "ragged" or (want == "auto" and batch_size == 1 and not full_length
                            and (models is None or models <= RAGGED_MAX_MODELS)):
        if ragged.usable(spec, hmax):
            return "ragged"
        if want == "ragged":
            raise ConfigError(f"RNNLAB_ENGINE=ragged: cell {spec.cell!r} does not run in the ragged kernel "
                              "(a parallel form, or a step that does not trace in lane layout: "
                              "engine.ragged.usable); use auto or vmap")
    ok = lanes.usable(spec, hmax)
    if want == "lanes" and not ok:
        raise ConfigError(f"RNNLAB_ENGINE=lanes: cell {spec.cell!r} does not run in the lane kernel "
                          "(engine.lanes.usable); use auto or vmap")
    return "lanes" if ok and (want == "lanes" or hmax <= LANES_MAX_HIDDEN) else "vmap"


@x64
def run_epoch(spec, protocol: Protocol, hmax: int, n_batches: int, params, opt_state, mask, lr, active,
              keys, epoch, data, positions: tuple | None = None, full_length: bool = False,
              shards: int | None = None):
    """One epoch of the whole population (the kernel :func:`engine_kind` picks: engine.lanes,
    engine.ragged or :func:`train_epoch`), in `shards` concurrent shards (default :func:`n_shards`). Same
    results per model either way."""
    m = int(np.shape(lr)[0])
    shards = n_shards(m) if shards is None else shards
    kind = engine_kind(spec, hmax, protocol.batch_size, full_length, models=-(-m // max(1, shards)))
    n = int(data["tokens"].shape[0])

    def orders(k):
        # each shard draws its own models' batch orders (NumPy sorts, which release the GIL):
        # the shards draw them at once, not one core while the others wait (epochs 6-12% faster)
        return lanes.batch_orders(k, epoch, n, n_batches, protocol.batch_size, protocol.shuffle)
    if kind in ("lanes", "ragged"):
        fn = partial(lanes.lane_epoch if kind == "lanes" else ragged.ragged_epoch, spec, protocol, hmax,
                     n_batches, positions=positions, full_length=full_length)

        def shard(p, o, mk, l, a, k):
            return fn(p, o, mk, l, a, orders(k), data)
    else:
        fn = partial(train_epoch, spec, protocol, hmax, n_batches, positions=positions, full_length=full_length)
        # on the CPU the models-first epoch takes the same orders from NumPy too: XLA:CPU's sort
        # of jax.random.permutation inside the compiled epoch cost more (measured December 8, 96
        # models, 2 shards, First: 1.03-1.17x faster epochs at GRU(4, 4-16) and rnn-tanh(4, 16),
        # the same parameters); on a GPU the epoch draws them itself
        cpu = jax.default_backend() == "cpu"

        def shard(p, o, mk, l, a, k):
            return fn(p, o, mk, l, a, k, epoch, data, orders=orders(k) if cpu else None)
    return sharded(shard, m, shards,
                   (("m", params), ("m", opt_state), ("m", mask), ("m", lr), ("m", active), ("m", keys)),
                   inactive=4)


@x64
def run_evaluate(spec, loss, hmax, params, mask, data, positions: tuple | None = None,
                 full_length: bool = False, shards: int | None = None):
    """:func:`population.evaluate` in `shards` concurrent shards (default :func:`n_shards`)."""
    m = int(jax.tree_util.tree_leaves(params)[0].shape[0])
    shards = n_shards(m) if shards is None else shards
    fn = lambda p, mk: evaluate(spec, loss, hmax, p, mk, data, positions=positions,  # noqa: E731
                                full_length=full_length)
    return sharded(fn, m, shards, (("m", params), ("m", mask)))


def epoch_protocol(protocol: Protocol) -> Protocol:
    """The protocol with only the fields an epoch uses (optimizer, batch size, loss, shuffling,
    divergence bound): schedules and stopping rules differ without recompiling the epoch."""
    return Protocol(name="epoch", optimizer=protocol.optimizer, batch_size=protocol.batch_size,
                    loss=protocol.loss, shuffle=protocol.shuffle, max_loss=protocol.max_loss)


#: populations are compacted (stopped models dropped) to power-of-two sizes no smaller than this.
#: 1: a population's last straggler (one model still improving for 90 epochs after the others
#: stopped, as in trainability-grid) trains alone, in its own padding (train(..., repad=True)):
#: measured (GRU, 8000 sequences of Xor) 0.34 s per epoch for 8 models padded to 15x16 against
#: 0.025 s for one 5x4 model; trainability-grid quick 1 min 46 s -> 1 min 18 s (MIN_COMPACT 8 -> 1)
MIN_COMPACT = 1
#: ... and only while at least this many epochs of the budget remain: a new size costs a
#: compilation, which a short run (quick scale: ~10 epochs) does not earn back. A rule on the
#: config, not on timings, so that what runs never depends on the machine's speed.
COMPACT_MIN_EPOCHS_LEFT = 20
#: ... and only once the slots computed for stopped models since the layout last changed add up
#: to this many model-batches, a model-batch of padded hidden size h > 4 counting h / 4 (ski
#: rental: a compaction is a new shape, one compilation of the epoch and of the evaluation,
#: ~2-4 s on 2 cores, about what 50,000 model-batches of a GRU(4,4) population cost; this rule
#: never pays more than about twice the better of "never" and "at once"). Measured (capacity-inits quick, cold): compacting at every halving compiled
#: 5 layouts for a shard that trained 20 epochs in all, 17 s of which ~3 s was training.
COMPACT_WASTE = 50_000


def compact_size(n_active: int, current: int) -> int:
    """How many models the next epoch computes: `current`, or once the running models fit in a
    power of two at most half of it (and >= MIN_COMPACT), that power of two. Few distinct sizes,
    so few compilations."""
    target = max(MIN_COMPACT, _pow2(n_active))
    return target if target <= current // 2 else current


def _select(active: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """Indices of the running models padded (with the first of them) to `size`, and their count."""
    idx = np.flatnonzero(active)
    return np.concatenate([idx, np.full(size - len(idx), idx[0], idx.dtype)]), len(idx)


def _gather(tree, sel):
    return jax.tree_util.tree_map(lambda a: a[sel], tree)


def _scatter(tree, sub, real, n):
    """Host trees: tree with rows `real` replaced by the first n rows of sub (a new tree)."""
    def one(a, b):
        a = a.copy()
        a[real] = b[:n]
        return a
    return jax.tree_util.tree_map(one, tree, sub)


@jit
def _order_keys(seeds):
    """Every model's batch-order key: PRNGKey(seed) folded with 7 (the init stream uses the
    seed itself)."""
    return jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(s), 7))(seeds)


def _pow2(n: int) -> int:
    """The smallest power of two >= n: compacted layouts come in few shapes, so populations of
    different experiments share their compiled epochs."""
    return 1 << max(0, int(n) - 1).bit_length()


def _repad_opt(spec, o, emax: int, hmax: int, emax2: int, hmax2: int):
    """Adam's moments follow the parameters' layout (mdl.repad); the step count does not."""
    if isinstance(o, optax.ScaleByAdamState):
        return o._replace(mu=mdl.repad(spec, o.mu, emax, hmax, emax2, hmax2),
                          nu=mdl.repad(spec, o.nu, emax, hmax, emax2, hmax2))
    return o


def _spread(values, real, n, m, fill=np.nan):
    out = np.full(m, fill, dtype=np.result_type(np.asarray(values).dtype, type(fill)))
    out[real] = np.asarray(values)[:n]
    return out


@x64
def _test_accuracy(spec, loss, hmax, params, mask, test, test_pos, test_full, val, val_pos, val_full,
                   shards) -> np.ndarray:
    """Per-model accuracy on the test split. When the test sequences fit the shapes of the
    validation program (same width, scored positions among its own, 0/1 target mask), they go
    through it in blocks of the validation size (the last one padded with unscored rows) and
    the blocks' correct counts are added: no program compiled for this one evaluation (~0.3 s
    per population, ~60 populations in a quick reproduction). Else test gets its own program."""
    tm = np.asarray(test["target_mask"])
    n_val, n = int(val["tokens"].shape[0]), int(tm.shape[0])
    fits = (all(test[k].shape[1:] == val[k].shape[1:] for k in test)
            and (not val_pos or set(test_pos or range(tm.shape[1])) <= set(val_pos))
            and (test_full or not val_full) and bool(np.all((tm == 0) | (tm == 1))))
    if not fits:
        _, acc = run_evaluate(spec, loss, hmax, params, mask, test, positions=test_pos, full_length=test_full,
                              shards=shards)
        return np.asarray(acc, np.float64)
    host = {k: np.asarray(v) for k, v in test.items()}
    correct = 0.0
    for a in range(0, n, n_val):
        block = {k: v[a:a + n_val] for k, v in host.items()}
        pad = n_val - len(block["tokens"])
        if pad:                  # unscored rows (mask 0) of full length: they change no count
            fill = {"lengths": tm.shape[1]}
            block = {k: np.concatenate([v, np.full((pad,) + v.shape[1:], fill.get(k, 0), v.dtype)])
                     for k, v in block.items()}
        _, acc = run_evaluate(spec, loss, hmax, params, mask, {k: jnp.asarray(v) for k, v in block.items()},
                              positions=val_pos, full_length=val_full, shards=shards)
        count = float(block["target_mask"].sum())
        correct = correct + np.rint(np.asarray(acc, np.float64) * count)
    return correct / max(float(tm.sum()), 1.0)


def init_opt_state(protocol: Protocol, params):
    """The optimizer state of every model (Adam: zero moments and count), built on the host
    from its traced structure: eager zeros would compile a small XLA program per tensor shape."""
    if protocol.optimizer == "adam":
        shapes = jax.eval_shape(jax.vmap(optax.scale_by_adam().init), params)
        return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    return optax.EmptyState()


@dataclass
class TrainResult:
    population: Population              # params = final parameters
    best_params: dict                   # padded, [M, ...], the best-val-acc checkpoint
    curves: pd.DataFrame                # one row per (model, epoch)
    summary: pd.DataFrame               # one row per model
    snapshots: list = field(default_factory=list)  # per-epoch params (numpy trees), epoch 0 = init
    wall_s: float = 0.0


@x64
def train(pop: Population, protocol: Protocol, data: dict, *, lr=None, snapshots: bool = False,
          progress: bool | str = True, max_epochs: int | None = None, compact: bool = True,
          repad: bool = True) -> TrainResult:
    """Train every model of `pop` with `protocol` on data["train"], validating on data["val"]
    (and measuring data["test"] on each model's best checkpoint, if given). lr: one value or one per model (default protocol.lr).
    compact: once the running models fit in a power of two at most half the population (see
    :func:`compact_size`), while COMPACT_MIN_EPOCHS_LEFT epochs of the budget remain, epochs and
    evaluations compute only them (gathered, then scattered back); a stopped model's parameters
    are frozen either way, and a model computes the same whichever models share its epoch.
    repad: a compacted sub-population is also cut to the padded sizes of its largest running
    model, rounded up to a power of two (mdl.repad: padded entries are zeros, so this is exact
    up to float rounding) - a population of mixed sizes whose last runners are small trains them
    at their own cost."""
    t0 = time.perf_counter()
    spec = pop.spec
    dt = spec.jdtype
    m = pop.size
    max_epochs = int(max_epochs or protocol.max_epochs)
    dev = {k: device_data(v, dt) for k, v in data.items()}
    n_train = len(data["train"])
    n_batches = -(-n_train // protocol.batch_size)
    keys = np.asarray(_order_keys(jnp.asarray(pop.seeds)))     # batch-order stream != init stream

    lr_np = np.broadcast_to(np.asarray(protocol.lr if lr is None else lr, dtype=np.float64), (m,)).copy()
    # the population lives on the host between epochs (see _host)
    params, pop_mask = _host(pop.params), _host(pop.mask)
    best = params
    opt_state = _host(init_opt_state(protocol, pop.params))
    active = np.ones(m, bool)
    status = np.array(["running"] * m, dtype=object)
    diverged_epoch = np.full(m, -1)
    best_val = np.full(m, -np.inf)
    best_epoch = np.zeros(m, int)
    best_test = np.full(m, np.nan)
    since_best = np.zeros(m, int)
    prev_val = np.full(m, np.nan)
    prev_loss = np.full(m, np.nan)
    epochs_run = np.zeros(m, int)
    rows = []
    snaps = [jax.tree_util.tree_map(np.asarray, params)] if snapshots else []

    positions = {k: mdl.scored_positions(v.target_mask) for k, v in data.items()}
    full = {k: mdl.full_length(v.tokens, v.lengths) for k, v in data.items()}
    shards = n_shards(m)

    # the padded layout epochs and evaluations compute in: the population's, until a compaction
    # cuts it to the largest running model's; shrink/grow are identities while they are equal
    sub_e, sub_h = pop.emax, pop.hmax
    shrink = lambda t: mdl.repad(spec, t, pop.emax, pop.hmax, sub_e, sub_h)    # noqa: E731
    grow = lambda t: mdl.repad(spec, t, sub_e, sub_h, pop.emax, pop.hmax)      # noqa: E731

    # every epoch measures val; test is measured once, at the end, on the best checkpoints (the
    # same numbers as measuring it every epoch and keeping the best epoch's: ~10-35% of a Mehta
    # run's time was that per-epoch test pass). A classification set (one scored position per
    # sequence, its last: the M tasks) is measured by the prefix kernel (engine.prefix: 8-15x
    # faster than population.evaluate at the papers' sizes, the same accuracies) where the run is
    # large enough to pay for its compilation; others by population.evaluate
    val_eval = prefix.population_eval(spec, data["val"], protocol.loss, pop.emax, pop.hmax, m,
                                      passes=max_epochs + 1)

    def measure(p, sel=None, n=m):
        """(loss, accuracy) on val of every model, or (sel) of the first n models of sel (NaN
        elsewhere): the prefix kernel in the population's layout, population.evaluate in the
        sub-population's layout (sub_e, sub_h)."""
        if val_eval is not None:
            loss, acc = val_eval(p, pop_mask) if sel is None else val_eval(_gather(p, sel[:n]),
                                                                             _gather(pop_mask, sel[:n]))
        else:
            mask = pop_mask if sel is None else shrink(_gather(pop_mask, sel))
            p = p if sel is None else shrink(_gather(p, sel))
            loss, acc = run_evaluate(spec, protocol.loss, sub_h, p, mask, dev["val"], positions=positions["val"],
                                     full_length=full["val"], shards=shards if sel is None else n_shards(len(sel)))
        loss, acc = np.asarray(loss), np.asarray(acc)
        if sel is None:
            return loss, acc
        return _spread(loss, sel[:n], n, m), _spread(acc, sel[:n], n, m)

    val_loss0, val_acc0 = measure(params)
    for i in range(m):
        rows.append((i, 0, np.nan, np.nan, val_loss0[i], val_acc0[i], lr_np[i], True))

    bar = progress_bar(range(1, max_epochs + 1), desc=progress if isinstance(progress, str) else f"train {spec.cell}",
                       disable=not progress, unit="epoch")
    size = m                                  # how many models an epoch computes
    waste = 0                                 # model-batches spent on stopped models in this layout
    for epoch in bar:
        if not active.any():
            break
        was_active = active.copy()
        waste += (size - int(active.sum())) * n_batches * max(1.0, sub_h / 4)   # a model-batch costs ~ hidden
        if compact and max_epochs - epoch + 1 >= COMPACT_MIN_EPOCHS_LEFT and waste >= COMPACT_WASTE:
            new_size = compact_size(int(active.sum()), size)
            waste = 0 if new_size != size else waste
            if new_size != size and repad:    # the sub-population's layout: its largest running model
                run = np.flatnonzero(active)
                sub_e = min(pop.emax, _pow2(int(pop.input_dims[run].max())))
                sub_h = min(pop.hmax, _pow2(int(pop.hiddens[run].max())))
            size = new_size
        # the whole population, or only the running models gathered into `size` slots
        sel, n_run = (None, m) if size == m else _select(active, size)
        sub = (lambda t: t) if sel is None else (lambda t: _gather(t, sel))
        run_active = active if sel is None else np.arange(size) < n_run
        p_in, mask_in = shrink(sub(params)), shrink(sub(pop_mask))
        o_in = _repad_opt(spec, sub(opt_state), pop.emax, pop.hmax, sub_e, sub_h)
        p_s, o_s, alive_s, loss_s, acc_s = run_epoch(
            spec, epoch_protocol(protocol), sub_h, n_batches, p_in, o_in,
            mask_in, sub(lr_np).astype(spec.dtype), run_active, sub(keys), epoch,
            dev["train"], positions=positions["train"], full_length=full["train"],
            shards=shards if sel is None else n_shards(size))
        p_s, o_s = _host(p_s), _host(o_s)
        if sel is None:
            params, opt_state = p_s, o_s
            alive, tr_loss, tr_acc = np.asarray(alive_s), np.asarray(loss_s), np.asarray(acc_s)
        else:
            real = sel[:n_run]
            params = _scatter(params, grow(p_s), real, n_run)
            opt_state = _scatter(opt_state, _repad_opt(spec, o_s, sub_e, sub_h, pop.emax, pop.hmax), real, n_run)
            alive = _spread(alive_s, real, n_run, m, fill=False)
            tr_loss, tr_acc = _spread(loss_s, real, n_run, m), _spread(acc_s, real, n_run, m)
        newly_div = was_active & ~alive
        diverged_epoch[newly_div] = epoch
        status[newly_div] = "diverged"
        active = alive
        epochs_run[was_active] = epoch
        val_loss, val_acc = measure(params, sel, n_run)

        improved = active & (val_acc > best_val)
        best = _host_where(improved, params, best)
        best_val = np.where(improved, val_acc, best_val)
        best_epoch = np.where(improved, epoch, best_epoch)
        since_best = np.where(improved, 0, since_best + 1)

        for i in np.flatnonzero(was_active):
            rows.append((i, epoch, tr_loss[i], tr_acc[i], val_loss[i], val_acc[i],
                         lr_np[i], bool(active[i])))

        # schedule, then stopping, for the models still running
        if protocol.halve_on == "val_acc_drop":
            halve = active & (val_acc < prev_val)
        elif protocol.halve_on == "train_loss_rise":
            halve = active & (tr_loss > prev_loss)
        else:
            halve = np.zeros(m, bool)
        lr_np = np.where(halve, lr_np / 2.0, lr_np)
        stop = np.zeros(m, bool)
        if protocol.patience is not None:
            s = active & (since_best >= protocol.patience)
            status[s & ~stop] = "patience"
            stop |= s
        if protocol.stop_acc is not None:      # before min_lr: reaching the target is the news
            s = active & (val_acc >= protocol.stop_acc) & ~stop
            status[s] = "reached_acc"
            stop |= s
        s = active & (lr_np < protocol.min_lr) & ~stop
        status[s] = "min_lr"
        stop |= s
        if protocol.tol is not None:
            s = active & (np.abs(tr_loss - prev_loss) < protocol.tol) & ~stop
            status[s] = "converged"
            stop |= s
        active = active & ~stop
        prev_val = np.where(was_active, val_acc, prev_val)
        prev_loss = np.where(was_active, tr_loss, prev_loss)
        if snapshots:
            snaps.append(params)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(running=int(active.sum()), best=f"{np.nanmax(best_val):.3f}")
    status[active] = "max_epochs"
    # a model that never improved keeps its initial parameters as "best"
    never = best_val == -np.inf
    best_val = np.where(never, val_acc0, best_val)
    if "test" in dev:     # the test accuracy of each model's best checkpoint (NaN: never improved)
        best_test = np.where(never, np.nan, _test_accuracy(
            spec, protocol.loss, pop.hmax, best, pop_mask, dev["test"], positions["test"], full["test"],
            dev["val"], positions["val"], full["val"], shards))

    curves = pd.DataFrame(rows, columns=["model", "epoch", "loss", "train_acc", "val_loss",
                                         "val_acc", "lr", "active"])
    summary = pd.DataFrame({
        "model": np.arange(m), "seed": pop.seeds, "cell": spec.cell, "input": pop.input_dims,
        "hidden": pop.hiddens, "n_params": pop.n_params(), "best_val_acc": best_val,
        "best_epoch": best_epoch, "test_acc": best_test, "epochs": epochs_run,
        "status": status.astype(str), "diverged_epoch": diverged_epoch,
    })
    dev_tree = lambda t: jax.tree_util.tree_map(jnp.asarray, t)    # noqa: E731
    final = Population(spec, pop.input_dims, pop.hiddens, pop.seeds, dev_tree(params), pop.mask)
    return TrainResult(final, dev_tree(best), curves, summary, snaps, time.perf_counter() - t0)
