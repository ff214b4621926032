"""The (l, k)-discrepancy of Sterin et al. (S §V, Definition V.1).

D(l, k) = mean over random parameter draws of ||h_u - h_v||_2, where h_u and h_v are the hidden
states a k-unit cell reaches after reading u = 0 0 ... 0 and v = 1 0 ... 0 (length l, one-hot
0 = [1, 0], 1 = [0, 1], h_0 = 0). Nothing is trained.

How it is computed (float64 throughout: the vanilla tail falls to ~1e-11 by l = 50):

* ONE recurrence of length max(lengths) per draw gives every l: u and v run side by side and
  the distance is recorded after every step.
* Parameters are drawn with NumPy (no RNG inside compiled code): draw d is row d of a
  [draws, n] block of standard normals from ``default_rng([seed, 0])`` (U(-1, 1) from
  ``default_rng([seed, 1])`` for uniform schemes), so it depends on (seed, d) only, not on the
  number of draws or the chunking. Each draw is one set of *base* tensors at the largest
  hidden size K; the k-unit model of that
  draw is the leading k x k block (per gate) of it, times the scheme's scale for size k (e.g.
  1/sqrt(k) for the recurrent matrix under "xavier"). Every D(., k) is thus an average over
  ``draws`` independent models of size k, exactly as in the paper; the models of different k
  within a draw share their leading blocks (common random numbers across k).
* Hidden sizes are zero-padded into a few buckets (masks keep padded units at 0; see
  :data:`MAX_BUCKETS` for the measured trade of padding against compile time), draws are
  processed in chunks that fit in cache, all in one compiled function per (cell, grid) that
  serves every init scheme (the scheme's scales are an input). The host draws the parameters
  in blocks of ~:data:`BLOCK` draws while worker threads compute the previous blocks, so it
  never holds every draw's parameters at once.
  rnn-tanh, rnn-sigmoid, gru and gru-s have hand-vectorised kernels (draws on the SIMD axis);
  any other registered cell runs through its own ``step`` under ``vmap`` (same numbers,
  slower).

Where its time goes (2-core AVX-512 VM, paper grid, 2000 draws): the recurrent multiply-adds, at
~4 GMAC/s per core, not the sigmoid/tanh (replaced by a division-only softsign, the run took the
same time) and not the draws (0.01-0.05 s). Measured and not kept: one [j, i, C] copy of the
recurrent weights shared by a bucket's sizes (the scheme's scale applied after the product)
instead of one per size: 0.9-1.45x per bucket, mixed.

:func:`sample_parameters` returns the exact parameters the computation uses, so the result can
be checked against a plain per-draw NumPy loop (tests/test_discrepancy.py).
"""
from __future__ import annotations

import mmap
import os
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from .. import cells
from .._jaxcfg import jit, x64
from ..cells import init as inits
from ..errors import ConfigError

#: draws per chunk of the compiled loop (results do not depend on it)
CHUNK = 40
#: at most this many padded hidden-size buckets (each one is a separate recurrence). Measured
#: (gru-s and rnn-sigmoid, l <= 50, k <= 20, 4096 draws, one core, 512-bit vectors): 2 buckets
#: 1.41 + 0.57 s, 4: 1.11 + 0.36 s, 6: 0.85 + 0.29 s, 8: 0.83 + 0.30 s (compile 1.9 / 3.4 / 4.7 s)
MAX_BUCKETS = 6
#: XLA:CPU options of the kernel: 512-bit vectors where the machine has them (the draws axis is
#: innermost); measured as above, 2 buckets: 1.91 + 0.68 s with XLA's default 256 bits
CPU_OPTIONS = {"xla_cpu_prefer_vector_width": 512}
FAST_CELLS = ("rnn-tanh", "rnn-sigmoid", "gru", "gru-s")
#: the draws are split into this many equal parts computed by as many threads
WORKERS = max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
N_SYMBOLS = 2


# ----------------------------------------------------------------------------- arguments


def _int_list(field: str, values) -> list[int]:
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        values = [values]
    try:
        vals = list(values)
    except TypeError:
        raise ConfigError(f"{field}: expected a list of integers >= 1, got {values!r}") from None
    if not vals:
        raise ConfigError(f"{field}: needs at least one value")
    out = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{field}: every value must be an integer >= 1, got {v!r}")
        out.append(int(v))
    return out


def _check(cell, lengths, hidden_sizes, draws, init, bias, seed):
    c = cells.get(cell)
    inits.check_scheme(init)
    lengths = _int_list("lengths", lengths)
    hidden_sizes = _int_list("hidden_sizes", hidden_sizes)
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
        raise ConfigError(f"draws: must be an integer >= 1, got {draws!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed: must be a non-negative integer, got {seed!r}")
    if not isinstance(bias, (bool, np.bool_)):
        raise ConfigError(f"bias: must be true or false, got {bias!r}")
    return c, lengths, hidden_sizes, int(draws), bool(bias), int(seed)


# ----------------------------------------------------------------------------- parameters


def _kinds(cell, init: str, bias: bool) -> dict:
    """name -> (base kind, role) for every tensor of the cell."""
    out = {}
    for name, prm in cell.param_specs(bias).items():
        kind, _ = inits.rule(prm.role, init, 1, 1)
        out[name] = (kind, prm.role)
    return out


def _scale(cell, name: str, init: str, k: int) -> float:
    """The scheme's scale of tensor `name` for a k-unit model (the base tensors are unit)."""
    prm = cell.params[name]
    fan_in = {"in": N_SYMBOLS, "h": k}[prm.axes[-1]] if prm.role != "bias" else k
    return float(inits.rule(prm.role, init, fan_in, k)[1])


def _base_shape(cell, name: str, kmax: int) -> tuple[int, ...]:
    """Base tensor shape at size kmax, "gh" split into (gates, kmax)."""
    shape = []
    for a in cell.params[name].axes:
        shape += {"gh": [cell.gates, kmax], "h": [kmax], "in": [N_SYMBOLS]}[a]
    return tuple(shape)


def _zeros(shape) -> np.ndarray:
    """float64 zeros; a large array lives in an anonymous memory map instead of NumPy's allocator.
    NumPy asks the kernel for transparent huge pages for arrays of 4 MB or more (madvise); their
    first touch was ~9x slower on the 2-core VM this was measured on (346 MB: 2.2 s against
    0.24 s with ordinary pages), and the discrepancy's draws and outputs are hundreds of MB per
    cell and scheme. No global setting changes."""
    n = int(np.prod(shape, dtype=np.int64)) * 8
    if n < 1 << 22:
        return np.zeros(shape)
    return np.frombuffer(mmap.mmap(-1, n), np.float64).reshape(shape)


def _layout(cell, init, bias, kmax):
    """(names, kinds, shapes, sizes) of the base tensors and the width of each random block."""
    kinds = _kinds(cell, init, bias)
    names = sorted(kinds)
    shapes = {n: _base_shape(cell, n, kmax) for n in names}
    sizes = {n: int(np.prod(shapes[n])) for n in names}
    width = {kind: sum(sizes[n] for n in names if kinds[n][0] == kind) for kind in ("normal", "uniform")}
    return names, kinds, shapes, sizes, width


def _base_blocks(cell, init, bias, kmax, seed, draws: int, rows: int, blocks: int):
    """Yield `blocks` dicts of base tensors [rows, ...]: rows b*rows .. (b+1)*rows-1 of
    :func:`_draw_bases` (rows >= draws are zero). The two random streams are consumed in
    order, so the values equal those of one [draws, n] block; only a block's worth of memory is
    touched (fresh memory is slow to fault in: a one-shot 346 MB block of gru-s bases took
    ~2 s more than drawing it in blocks on a 2-core VM)."""
    names, kinds, shapes, sizes, width = _layout(cell, init, bias, kmax)
    rngs = {kind: np.random.default_rng([seed, j]) for j, kind in enumerate(("normal", "uniform"))}
    for b in range(blocks):
        n = max(0, min(rows, draws - b * rows))
        buf = {}
        for kind, w in width.items():
            if w:
                x = _zeros((rows, w))
                if n:
                    if kind == "normal":
                        rngs[kind].standard_normal(out=x[:n])
                    else:
                        x[:n] = rngs[kind].uniform(-1.0, 1.0, (n, w))
                buf[kind] = x
        out, pos = {}, {"normal": 0, "uniform": 0}
        for name in names:
            kind = kinds[name][0]
            if kind not in buf:
                out[name] = _zeros((rows,) + shapes[name])
                continue
            out[name] = buf[kind][:, pos[kind]:pos[kind] + sizes[name]].reshape((rows,) + shapes[name])
            pos[kind] += sizes[name]
        yield out


def _draw_bases(cell, init, bias, kmax, seed, draws: int, total: int | None = None) -> dict:
    """Base tensors of draws 0..draws-1, stacked [total, ...] (rows >= draws are zero padding).
    Row d is row d of one [draws, n] block of standard normals (stream default_rng([seed, 0]))
    and one of U(-1, 1) (stream default_rng([seed, 1])), so it depends on (seed, d) only, not on
    the number of draws or on the chunking."""
    total = draws if total is None else total
    return next(_base_blocks(cell, init, bias, kmax, seed, draws, total, 1))


def _model_from_base(cell, base: dict, init: str, k: int) -> dict:
    """The k-unit model (NumPy, the cell's own layout) inside one draw's base tensors."""
    p = {}
    for name, b in base.items():
        b = np.asarray(b)
        axes = cell.params[name].axes
        idx, dims = [], []
        for a in axes:
            if a == "gh":
                idx += [slice(None), slice(0, k)]
                dims.append(cell.gates * k)
            elif a == "h":
                idx.append(slice(0, k))
                dims.append(k)
            else:
                idx.append(slice(None))
                dims.append(N_SYMBOLS)
        p[name] = b[tuple(idx)].reshape(dims) * _scale(cell, name, init, k)
    return p


@x64
def sample_parameters(cell: str, hidden_sizes, draws: int = 2000, init: str = "normal",
                      bias: bool = False, seed: int = 0) -> list[dict]:
    """The exact parameters :func:`discrepancy` uses: a list over draws of {k: {tensor: array}}
    in the cell's own layout (NumPy float64). For tests and small checks."""
    c, _, hidden_sizes, draws, bias, seed = _check(cell, [1], hidden_sizes, draws, init, bias, seed)
    bases = _draw_bases(c, init, bias, max(hidden_sizes), seed, draws)
    out = []
    for d in range(draws):
        base = {n: x[d] for n, x in bases.items()}
        out.append({k: _model_from_base(c, base, init, k) for k in hidden_sizes})
    return out


# ----------------------------------------------------------------------------- buckets


def buckets(hidden_sizes, max_buckets: int = MAX_BUCKETS) -> list[list[int]]:
    """Split the sorted unique sizes into at most `max_buckets` contiguous groups minimising the
    padded work sum(len(group) * max(group)^2)."""
    ks = sorted(set(hidden_sizes))
    n = len(ks)
    nb = min(max_buckets, n)
    cost = lambda i, j: (j - i) * ks[j - 1] ** 2  # noqa: E731  group ks[i:j]
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(nb + 1)]
    arg = [[0] * (n + 1) for _ in range(nb + 1)]
    best[0][0] = 0.0
    for b in range(1, nb + 1):
        for j in range(1, n + 1):
            for i in range(j):
                v = best[b - 1][i] + cost(i, j)
                if v < best[b][j]:
                    best[b][j], arg[b][j] = v, i
    b = min(range(1, nb + 1), key=lambda b: best[b][n])
    groups, j = [], n
    while b > 0:
        i = arg[b][j]
        groups.append(ks[i:j])
        j, b = i, b - 1
    return groups[::-1]


# ----------------------------------------------------------------------------- kernels


def _bucket_params(cell, scales: dict, base_c, kb: int, ks: tuple[int, ...]):
    """Per-bucket padded parameters of a chunk of draws: dict name -> [C, nk, *padded shape]
    (zero outside each model's k, times scales[name] [nk], the scheme's factor for each k)."""
    nk = len(ks)
    kmask = (np.arange(kb)[None, :] < np.asarray(ks)[:, None]).astype(np.float64)   # [nk, kb]
    out = {}
    for name, b in base_c.items():
        axes = cell.params[name].axes
        idx = [slice(None)]
        m = np.ones((nk,))
        for a in axes:
            d = m.ndim
            if a == "gh":
                idx += [slice(None), slice(0, kb)]
                m = m[..., None, None] * kmask.reshape((nk,) + (1,) * d + (kb,))
            elif a == "h":
                idx.append(slice(0, kb))
                m = m[..., None] * kmask.reshape((nk,) + (1,) * (d - 1) + (kb,))
            else:
                idx.append(slice(None))
                m = m[..., None]
        scale = scales[name].reshape((nk,) + (1,) * (m.ndim - 1))
        out[name] = b[tuple(idx)][:, None] * (jnp.asarray(m) * scale)   # [C, nk, ...padded]
    return out


def _cell_layout(cell, pb: dict) -> dict:
    """Bucket parameters [C, nk, ..., G, kb, ...] -> the cell's own layout [C, nk, ..., G*kb, ...]."""
    out = {}
    for name, x in pb.items():
        shape = list(x.shape[:2])
        pos = 2
        for a in cell.params[name].axes:
            if a == "gh":
                shape.append(x.shape[pos] * x.shape[pos + 1])
                pos += 2
            else:
                shape.append(x.shape[pos])
                pos += 1
        out[name] = x.reshape(shape)
    return out


def _matvec_last(W, h):
    """W [j, i, nk, C] (input unit j -> output unit i), h [2, j, nk, C] -> [2, i, nk, C], written
    as an unrolled multiply-add over j so XLA emits one vectorised loop over the draws."""
    acc = W[0][None] * h[:, 0:1]
    for j in range(1, W.shape[0]):
        acc = acc + W[j][None] * h[:, j:j + 1]
    return acc


def _fast_step(name: str, P: dict, h, ux):
    """One step of the 4 standard cells in the draws-last layout. P: per gate g,
    P["W"][g] [j, i, nk, C], P["bh"][g] [i, nk, C] or None; ux[g] [2 or 1, i, nk, C] (input
    projection incl. b_ih)."""
    W, bh = P["W"], P["bh"]

    def rec(g, v):
        out = _matvec_last(W[g], v)
        return out if bh[g] is None else out + bh[g][None]
    if name in ("rnn-tanh", "rnn-sigmoid"):
        act = jnp.tanh if name == "rnn-tanh" else jax.nn.sigmoid
        return act(ux[0] + rec(0, h))
    if name == "gru":         # blocks r, z, n; reset after the recurrent matrix
        r = jax.nn.sigmoid(ux[0] + rec(0, h))
        z = jax.nn.sigmoid(ux[1] + rec(1, h))
        n = jnp.tanh(ux[2] + r * rec(2, h))
        return (1.0 - z) * n + z * h
    if name == "gru-s":       # blocks z, r, h; reset before the recurrent matrix
        z = jax.nn.sigmoid(ux[0] + rec(0, h))
        r = jax.nn.sigmoid(ux[1] + rec(1, h))
        hc = jnp.tanh(ux[2] + rec(2, r * h))
        return (1.0 - z) * hc + z * h
    raise KeyError(name)


def _run_fast(cell, pb: dict, kb: int, ks, lmax: int):
    """Distances [lmax, nk, C] of one bucket, fast kernel. pb from _bucket_params."""
    G = cell.gates
    nk = len(ks)
    hmask = jnp.asarray((np.arange(kb)[:, None] < np.asarray(ks)[None, :]).astype(np.float64))[:, :, None]
    # input projections per gate: [C, nk, G, kb, 2] -> per gate [sym, i, nk, C]
    Wih = pb["W_ih"]
    bih = pb.get("b_ih")
    U = jnp.transpose(Wih, (2, 4, 3, 1, 0))                      # [G, sym, kb, nk, C]
    if bih is not None:
        U = U + jnp.transpose(bih, (2, 3, 1, 0))[:, None]
    Whh = jnp.transpose(pb["W_hh"], (2, 4, 3, 1, 0))             # [G, j, i, nk, C]
    bhh = pb.get("b_hh")
    P = {"W": [Whh[g] for g in range(G)],
         "bh": [None if bhh is None else jnp.transpose(bhh, (2, 3, 1, 0))[g] for g in range(G)]}
    u_first = [U[g] for g in range(G)]                           # [2, i, nk, C]: u reads 0, v reads 1
    u_zero = [U[g, 0:1] for g in range(G)]                       # [1, i, nk, C]
    C = Wih.shape[0]
    h = jnp.zeros((2, kb, nk, C), jnp.float64)
    h = _fast_step(cell.name, P, h, u_first) * hmask

    def body(h, _):
        h = _fast_step(cell.name, P, h, u_zero) * hmask
        return h, jnp.sqrt(jnp.sum((h[0] - h[1]) ** 2, axis=0))
    d0 = jnp.sqrt(jnp.sum((h[0] - h[1]) ** 2, axis=0))
    _, ds = jax.lax.scan(body, h, None, length=lmax - 1)
    return jnp.concatenate([d0[None], ds], axis=0)


def _run_generic(cell, pb: dict, kb: int, ks, lmax: int):
    """Distances [lmax, nk, C] of one bucket through the cell's own step (any cell)."""
    nk = len(ks)
    hm = (np.arange(kb)[None, :] < np.asarray(ks)[:, None]).astype(np.float64)    # [nk, kb]
    smask = jnp.asarray(np.tile(hm, (1, cell.state_mult)))[None, :, None, :]      # [1, nk, 1, S]
    pb = _cell_layout(cell, pb)
    step = jax.vmap(jax.vmap(jax.vmap(cell.step, (None, 0, 0)), (0, 0, None)), (0, 0, None))
    C = next(iter(pb.values())).shape[0]
    s = jnp.zeros((C, nk, 2, cell.state_mult * kb), jnp.float64)
    x_first = jnp.eye(N_SYMBOLS, dtype=jnp.float64)                              # u: 0, v: 1
    x_zero = jnp.tile(x_first[0:1], (2, 1))

    def dist(s):
        h = cell.hidden_of(s, kb)
        return jnp.sqrt(jnp.sum((h[:, :, 0] - h[:, :, 1]) ** 2, axis=-1)).T     # [nk, C]
    s = step(pb, s, x_first) * smask

    def body(s, _):
        s = step(pb, s, x_zero) * smask
        return s, dist(s)
    _, ds = jax.lax.scan(body, s, None, length=lmax - 1)
    return jnp.concatenate([dist(s)[None], ds], axis=0)


@lru_cache(maxsize=64)
def _compiled(cell_name: str, groups: tuple, lmax: int, fast: bool):
    """jit'ed fn(base, scales) -> per-draw distances [n_chunks * C, lmax, n_sizes]; base: dict
    of [n_chunks, C, ...] base tensors (see :func:`_draw_bases`), scales: dict of [n_sizes]
    factors of the init scheme (an input, so one compilation serves every scheme)."""
    cell = cells.get(cell_name)
    run = _run_fast if fast else _run_generic

    def one_chunk(base, scales):
        outs, pos = [], 0
        for g in groups:
            kb = max(g)
            sc = {n: v[pos:pos + len(g)] for n, v in scales.items()}
            pos += len(g)
            outs.append(run(cell, _bucket_params(cell, sc, base, kb, g), kb, g, lmax))
        return jnp.concatenate(outs, axis=1)                     # [lmax, n_sizes, C]

    def f(base, scales):
        out = jax.lax.map(lambda b: one_chunk(b, scales), base)  # [n_chunks, lmax, n, C]
        n, _, _, c = out.shape
        return jnp.transpose(out, (0, 3, 1, 2)).reshape(n * c, lmax, -1)
    return jit(f, cpu_options=CPU_OPTIONS)


#: draws are drawn and computed in blocks of about this many (whole chunks), WORKERS blocks at a
#: time: the host never holds all the draws' parameters (32768 gru-s draws at k <= 20 are 346 MB)
BLOCK = 2048


def _prepare(cell, lengths, hidden_sizes, draws, init, bias, seed, chunk, kernel):
    """(compiled fn, blocks: a generator of host base dicts [chunks_per_block, chunk, ...],
    number of blocks, scales, the sizes in output order)."""
    if kernel not in ("auto", "generic"):
        raise ConfigError(f"kernel: must be 'auto' or 'generic', got {kernel!r}")
    groups = tuple(tuple(g) for g in buckets(hidden_sizes))
    chunk = max(1, min(int(chunk), draws))
    n_chunks = -(-draws // chunk)
    n_blocks = -(-n_chunks * chunk // BLOCK)
    if n_chunks >= 2 * WORKERS:                                 # equal work for the worker threads
        n_blocks = -(-max(n_blocks, WORKERS) // WORKERS) * WORKERS
    per_block = -(-n_chunks // n_blocks)                        # chunks per block
    fast = kernel == "auto" and cell.name in FAST_CELLS and cells.get(cell.name) is cell
    fn = _compiled(cell.name, groups, max(lengths), fast)
    kmax = max(hidden_sizes)
    rows = per_block * chunk
    blocks = ({n: x.reshape((per_block, chunk) + x.shape[1:]) for n, x in b.items()}
              for b in _base_blocks(cell, init, bias, kmax, seed, draws, rows, n_blocks))
    order = [k for g in groups for k in g]
    scales = {n: jnp.asarray([_scale(cell, n, init, k) for k in order], jnp.float64)
              for n in _kinds(cell, init, bias)}
    return fn, blocks, n_blocks, scales, order


_EXECUTABLES: dict = {}


def _execute(fn, blocks, n_blocks: int, scales: dict, timing: dict | None = None, fresh: bool = False):
    """Run the compiled discrepancy function on every block (compiled ahead of time on first use
    of a shape, so the compile and run times can be told apart). This thread draws the blocks in
    order while up to WORKERS threads compute the previous ones (XLA runs one CPU computation on
    one core)."""
    t0 = time.perf_counter()
    draw_s = 0.0
    first = next(blocks)
    draw_s += time.perf_counter() - t0
    sig = (fn, tuple((k, v.shape) for k, v in sorted(first.items())),
           tuple((k, v.shape) for k, v in sorted(scales.items())))
    t1 = time.perf_counter()
    exe = None if fresh else _EXECUTABLES.get(sig)
    if exe is None:
        exe = fn.lower(first, scales).compile()
        if len(_EXECUTABLES) > 64:
            _EXECUTABLES.clear()
        _EXECUTABLES[sig] = exe
    t2 = time.perf_counter()
    rows = int(exe.out_info.shape[0])
    out = _zeros((n_blocks * rows,) + tuple(exe.out_info.shape[1:]))

    @x64                                  # (a thread starts with JAX's global setting)
    def run(i, b):
        out[i * rows:(i + 1) * rows] = np.asarray(jax.block_until_ready(exe(b, scales)))
    if n_blocks == 1:
        run(0, first)
    else:
        with ThreadPoolExecutor(WORKERS) as pool:
            futs = [pool.submit(run, 0, first)]
            for i in range(1, n_blocks):
                if len(futs) >= WORKERS + 1:         # at most WORKERS + 1 blocks in memory
                    futs[len(futs) - WORKERS - 1].result()
                t = time.perf_counter()
                b = next(blocks)
                draw_s += time.perf_counter() - t
                futs.append(pool.submit(run, i, b))
            for f in futs:
                f.result()
    t3 = time.perf_counter()
    if timing is not None:
        timing.update(draw_s=draw_s, compile_s=t2 - t1, run_s=t3 - t2)
    return out


@x64
def discrepancy_draws(cell: str, lengths, hidden_sizes, draws: int = 2000, init: str = "normal",
                      bias: bool = False, seed: int = 0, *, chunk: int = CHUNK,
                      kernel: str = "auto", timing: dict | None = None) -> np.ndarray:
    """Per-draw distances ||h_u - h_v||_2: float64 [draws, len(lengths), len(hidden_sizes)].
    kernel="generic" forces the cell's own step (for checking the fast kernels); `timing`, if
    given, receives draw_s, compile_s (0 when already compiled) and run_s."""
    c, lengths, hidden_sizes, draws, bias, seed = _check(cell, lengths, hidden_sizes, draws, init,
                                                         bias, seed)
    fn, blocks, n_blocks, scales, order = _prepare(c, lengths, hidden_sizes, draws, init, bias, seed, chunk,
                                                   kernel)
    out = _execute(fn, blocks, n_blocks, scales, timing)[:draws]     # [draws, lmax, n_unique]
    col = {k: i for i, k in enumerate(order)}
    li, ki = np.asarray(lengths) - 1, [col[k] for k in hidden_sizes]
    if list(li) != list(range(out.shape[1])):           # (copies of [draws, lmax, n] only when needed)
        out = out[:, li]
    return out if ki == list(range(out.shape[2])) else out[:, :, ki]


@x64
def discrepancy(cell: str, lengths, hidden_sizes, draws: int = 2000, init: str = "normal",
                bias: bool = False, seed: int = 0) -> np.ndarray:
    """D(l, k) of Sterin et al. §V: float64 [len(lengths), len(hidden_sizes)], the mean over
    `draws` random parameter draws (scheme `init`, cell biases if `bias`) of ||h_u - h_v||_2
    after reading u = 0...0 and v = 1 0...0 of length l with a k-unit `cell`.

    >>> import rnnlab
    >>> D = rnnlab.discrepancy("gru-s", range(1, 51), range(1, 21))   # paper grid, ~seconds
    """
    return discrepancy_draws(cell, lengths, hidden_sizes, draws, init, bias, seed).mean(axis=0)


@x64
def timings(cell: str, lengths, hidden_sizes, draws: int = 2000, init: str = "normal",
            bias: bool = False, seed: int = 0, *, chunk: int = CHUNK) -> dict:
    """Seconds spent drawing the parameters (draw_s), compiling (compile_s, always a fresh
    ahead-of-time compilation) and running (run_s) one discrepancy computation."""
    c, lengths, hidden_sizes, draws, bias, seed = _check(cell, lengths, hidden_sizes, draws, init,
                                                         bias, seed)
    fn, blocks, n_blocks, scales, _ = _prepare(c, lengths, hidden_sizes, draws, init, bias, seed, chunk, "auto")
    out: dict = {}
    _execute(fn, blocks, n_blocks, scales, out, fresh=True)
    return out
