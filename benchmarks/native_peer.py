"""The training engine against a hand-written C epoch: how far a compiled core would go.

Issue 17 asks the engine for 5x the training throughput of the models-first epoch it replaced.
The JAX lane kernel (engine.lanes) reaches 1.1-1.6x at the papers' smallest sizes
(benchmarks/train_engine.py). This script measures what a native kernel would give, as a
measuring stick beside torch: rnnlab ships no compiled code (the project is pure Python).

It builds benchmarks/native/gru_epoch.c with the machine's gcc (skipped, with a note, without
gcc or AVX-512), then checks it:
- its gradient of one batch against JAX autodiff of rnnlab's own model (engine.model's
  token_states and readout, float64);
- its parameters after a two-batch epoch against engine.train.run_epoch's, from the same
  population with the same batch orders (float32).
Then it times, in one process, interleaved, medians of `reps`, one Mehta epoch of First
(8000 sequences, batch 32, Adam 1e-3, each model its own batch order) of 96 GRU(4, 4):
- old: the models-first epoch as before issue 17 (train_engine.models_first_epoch), new: what
  rnnlab runs (run_epoch, auto), both in concurrent shards (benchmarks/train_engine.py's sides);
- native: the C epoch on the same population, its blocks of 16 models on one thread per core
  (ctypes releases the GIL), each block drawing its batch orders as the engine draws them
  (lanes.batch_orders) inside the timed call.

The C epoch does less than the engine: GRU(4, 4) on First only (sizes compiled in), no masks,
padding, divergence checks, per-model stopping or other cells. Read old/native as an upper
bound of what a compiled core would give the engine at this size.

    python benchmarks/native_peer.py [--quick]
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

try:
    from . import common, train_engine, train_population
except ImportError:       # run as a script
    import common
    import train_engine
    import train_population

WORKLOAD = "native_peer"
SRC = Path(__file__).resolve().parent / "native" / "gru_epoch.c"
#: -O3 for the machine's vector unit; the three value flags let gcc vectorise the clamps of
#: exp/tanh (min/max) and do not change results for finite values
CFLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-ffinite-math-only",
          "-fno-signed-zeros", "-shared", "-fPIC"]
CELL, E, H, BATCH = "gru", 4, 4, 32
TARGET_RATIO = train_engine.TARGET_RATIO


def config(quick: bool) -> dict:
    return {"models": 96, "n_train": 1600 if quick else 8000, "reps": 2 if quick else 3}


def cpu_has_avx512() -> bool:
    try:
        return " avx512f " in f" {Path('/proc/cpuinfo').read_text()} ".replace("\n", " ")
    except OSError:
        return False


def why_not() -> str | None:
    """Why the C epoch cannot run here (None when it can)."""
    if shutil.which("gcc") is None:
        return "no gcc on this machine"
    if not cpu_has_avx512():
        return "the C epoch needs AVX-512 (its 16-model blocks are one vector)"
    return None


def build(out_dir: str | None = None) -> tuple[str, float]:
    """(path of the compiled library, seconds gcc took)."""
    out = Path(out_dir or tempfile.mkdtemp(prefix="rnnlab-native-")) / "gru_epoch.so"
    t0 = time.perf_counter()
    subprocess.run(["gcc", *CFLAGS, "-o", str(out), str(SRC)], check=True, capture_output=True, text=True)
    return str(out), time.perf_counter() - t0


def c_layout(params, dtype=np.float32) -> np.ndarray:
    """[n_params, M]: a population's parameter tree (models first) in the C epoch's order."""
    parts = [params["emb"], params["cell"]["W_ih"], params["cell"]["W_hh"], params["cell"]["b_ih"],
             params["cell"]["b_hh"], params["out"]["W"], params["out"]["b"]]
    return np.ascontiguousarray(np.concatenate(
        [np.asarray(a, dtype).reshape(np.shape(a)[0], -1) for a in parts], 1).T)


def _check_data(train) -> np.ndarray:
    """The tokens of `train`, if the C epoch can train on them (First's shape), else ValueError."""
    tokens = np.asarray(train.tokens)
    if tokens.ndim != 2 or tokens.shape[1] != 10 or int(np.max(tokens)) >= 10 or len(tokens) % BATCH:
        raise ValueError(f"native epoch: First's sequences of 10 tokens (vocab 10), a whole number of batches "
                         f"of {BATCH}; got tokens {tokens.shape}")
    return tokens


class NativeEpoch:
    """The C epoch of a GRU(4, 4) population `params` (models first, as engine.population) on
    the task data `train`; each call trains one epoch in place."""

    def __init__(self, so: str, params, train, keys, lr: float = 1e-3, threads: int | None = None):
        lib = ctypes.CDLL(so)
        self.fn = lib.epoch
        self.fn.restype = ctypes.c_int
        self.fn.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 7 + [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        self.lanes = int(lib.lanes())
        flat = c_layout(params)
        if flat.shape[0] != lib.n_params():
            raise ValueError(f"native epoch: {flat.shape[0]} parameters per model, the C epoch has {lib.n_params()}")
        m = flat.shape[1]
        if m % self.lanes:
            raise ValueError(f"native epoch: the population ({m}) must be a multiple of {self.lanes} models")
        tokens = _check_data(train)
        self.tokens = np.ascontiguousarray(tokens, np.int32)
        self.labels = np.ascontiguousarray(np.asarray(train.targets)[:, -1], np.int32)
        self.keys, self.n, self.nb = keys, len(tokens), len(tokens) // BATCH
        L = self.lanes
        self.P = [np.ascontiguousarray(flat[:, i:i + L]) for i in range(0, m, L)]
        self.m1 = [np.zeros_like(p) for p in self.P]
        self.m2 = [np.zeros_like(p) for p in self.P]
        self.lr = np.full(L, lr, np.float32)
        self.step, self.epoch = 0, 1
        self.threads = threads or len(os.sched_getaffinity(0))
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="native-epoch")

    def _orders(self, i: int | None = None) -> np.ndarray:
        """[M, nb, B] batch orders of this epoch (of block i's models only, if given)."""
        from rnnlab.engine import lanes
        keys = self.keys if i is None else self.keys[i * self.lanes:(i + 1) * self.lanes]
        return lanes.batch_orders(keys, self.epoch, self.n, self.nb, BATCH, True)

    def _call(self, i: int, orders, nb: int, grad=None, update: bool = True) -> None:
        """Block i's epoch; `orders` [M, nb, B] of all models, or None: block i draws its own."""
        L, ptr = self.lanes, (lambda a: a.ctypes.data_as(ctypes.c_void_p))
        own = self._orders(i) if orders is None else orders[i * L:(i + 1) * L]
        o = np.ascontiguousarray(own[:, :nb].transpose(1, 2, 0))                              # [nb, B, L]
        rc = self.fn(nb, ptr(self.tokens), ptr(self.labels), ptr(o), ptr(self.P[i]), ptr(self.m1[i]),
                     ptr(self.m2[i]), ptr(self.lr), self.step, None if grad is None else ptr(grad), int(update))
        if rc != 0:
            raise MemoryError("native epoch: its workspace could not be allocated")

    def __call__(self):
        list(self.pool.map(lambda i: self._call(i, None, self.nb), range(len(self.P))))
        self.step += self.nb
        return None

    def params(self) -> np.ndarray:
        """[n_params, M] float32."""
        return np.concatenate(self.P, axis=1)

    def first_batch_grad(self, orders) -> np.ndarray:
        """[n_params, M]: the gradient of the first batch of `orders` ([M, nb, B], this epoch's
        from :meth:`_orders`), no update."""
        grads = [np.zeros_like(p) for p in self.P]
        for i, g in enumerate(grads):
            self._call(i, orders, 1, grad=g, update=False)
        return np.concatenate(grads, axis=1)

    def close(self):
        self.pool.shutdown(wait=True)


def reference_grad(params, train, orders) -> np.ndarray:
    """[n_params, M] float64: JAX autodiff of rnnlab's model (engine.model) on each model's first
    batch of `orders` [M, nb, B], mean cross-entropy of the last state's read-out."""
    import jax
    import jax.numpy as jnp
    from rnnlab._jaxcfg import x64
    from rnnlab.engine import model as mdl
    from rnnlab.experiments.common import model_spec
    spec = model_spec("first", CELL, "torch", dtype="float64")
    tokens = jnp.asarray(np.asarray(train.tokens), jnp.int32)
    labels = jnp.asarray(np.asarray(train.targets)[:, -1], jnp.int32)

    def loss(p, idx):
        states = jax.vmap(lambda tk: mdl.token_states(spec, p, tk, None, H))(tokens[idx])        # [B, T, H]
        logp = jax.nn.log_softmax(mdl.readout(spec, p, states[:, -1, :H]), axis=-1)
        return -jnp.mean(logp[jnp.arange(len(idx)), labels[idx]])

    @x64
    def run():
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), params)
        return c_layout(jax.vmap(jax.grad(loss))(p64, jnp.asarray(orders[:, 0])), np.float64)
    return run()


def checks(so: str, models: int = 16, n_train: int = 64) -> dict:
    """The C epoch against rnnlab: gradient (relative to its largest entry) and parameters after
    one epoch of n_train / 32 batches (largest absolute difference; Adam moves each by <= lr
    per batch)."""
    from rnnlab.engine.train import run_epoch
    train = train_population._data(n_train)
    ep = train_population.RnnlabEpoch(CELL, E, H, models, train)
    args = ep.args
    params, keys = args[4], args[9]
    native = NativeEpoch(so, params, train, np.asarray(keys), threads=1)
    try:
        orders = native._orders()
        g_c = native.first_batch_grad(orders)
        g_ref = reference_grad(params, train, orders)
        native()
    finally:
        native.close()
    with train_engine._engine("lanes"):
        out = run_epoch(*args, **ep.kw)
    engine_params = c_layout(out[0])
    return {"grad_rel_err": float(np.abs(g_c - g_ref).max() / np.abs(g_ref).max()),
            "params_max_diff": float(np.abs(native.params() - engine_params).max()),
            "check_batches": native.nb, "check_models": models}


def measure(models: int, n_train: int, reps: int) -> dict:
    so, gcc_s = build()
    check = checks(so)
    train = train_population._data(n_train)
    old = train_engine.Epoch("old", CELL, E, H, models, train)
    new = train_engine.Epoch("auto", CELL, E, H, models, train)
    native = NativeEpoch(so, old.inner.args[4], train, np.asarray(old.inner.args[9]))
    try:
        sides = {"old": old, "new": new, "native": native}
        first = {k: common.timed(f)[1] for k, f in sides.items()}
        t = common.interleave(sides, reps)
    finally:
        native.close()
    med = {k: common.median(t[k]["wall"]) for k in sides}
    from rnnlab.experiments.common import model_spec
    flops = train_engine.useful_flops(model_spec("first", CELL, "torch"), E, H, train) * native.nb * models
    peak = train_engine.random_landscape.peak_gflops()
    return {"case": f"{CELL} {E}x{H}, M={models}", "old_s": med["old"], "new_s": med["new"], "native_s": med["native"],
            "ratio_old": med["old"] / med["native"], "ratio_new": med["new"] / med["native"],
            "engine_ratio": med["old"] / med["new"], "target": TARGET_RATIO,
            "native_gflops": flops / med["native"] / 1e9, "new_gflops": flops / med["new"] / 1e9,
            "peak_gflops": peak, "native_frac_peak": flops / med["native"] / (peak * 1e9),
            "new_frac_peak": flops / med["new"] / (peak * 1e9),
            "native_first_s": first["native"], "gcc_s": gcc_s, "threads": native.threads,
            "kernel_new": new.kind, "shards": new.inner.shards, **check,
            "walls": {k: t[k]["wall"] for k in sides}}


def run(quick: bool = False, isolate: bool = True, memory: bool = False, **overrides) -> dict:
    cfg = {**config(quick), **overrides}
    out = {"workload": WORKLOAD, "title": "the training engine vs a hand-written C epoch (a compiled core's reach)",
           "config": cfg}
    reason = why_not()
    if reason:
        return {**out, "cases": [], "notes": [f"skipped: {reason}"]}
    kw = {k: cfg[k] for k in ("models", "n_train", "reps")}
    case = common.run_child(WORKLOAD, "measure", kw) if isolate else measure(**kw)
    return {**out, "cases": [case],
            "columns": [("case", "case"), ("old_s", "old epoch s"), ("new_s", "new epoch s"),
                        ("native_s", "C epoch s"), ("engine_ratio", "old/new"), ("ratio_old", "old/C"),
                        ("ratio_new", "new/C"), ("target", "target old/new"), ("new_frac_peak", "new of peak"),
                        ("native_frac_peak", "C of peak"), ("grad_rel_err", "C grad rel err"),
                        ("params_max_diff", "C vs engine params"), ("gcc_s", "gcc s"), ("threads", "C threads")],
            "notes": [f"First, {cfg['n_train']} training sequences, batch 32, Adam 1e-3, each model its own batch "
                      f"order; medians of {cfg['reps']} interleaved repetitions in one process",
                      "old = the models-first epoch as before issue 17, new = what rnnlab runs (run_epoch, auto), "
                      "both in concurrent shards; C = benchmarks/native/gru_epoch.c (gcc -O3 "
                      "-march=native), blocks of 16 models on one thread per core, each block drawing its batch "
                      "orders (lanes.batch_orders, NumPy) inside the timed call",
                      "of peak = useful GFLOP/s (train_engine's count: XLA's flops of a step forward and backward, "
                      "transcendentals as 1) / the best float32 1024^3 matmul of the same process (target 25%)",
                      "C grad rel err: one batch's gradient against JAX autodiff of rnnlab's model in float64 "
                      "(16 models); C vs engine params: largest parameter difference after a 2-batch epoch from "
                      "the same population and batch orders (float32; Adam moves a parameter by <= 1e-3 a batch)",
                      "the C epoch is GRU(4, 4) on First only, with no masks, padding, divergence checks or "
                      "per-model stopping: old/C bounds what a compiled core would give the engine at this size; "
                      "rnnlab ships no compiled code"]}


if __name__ == "__main__":
    raise SystemExit(common.cli(run))
