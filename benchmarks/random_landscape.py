"""Accuracies of untrained random models (Mehta VI.A) against one torch model at a time.

rnnlab: ``analysis.landscape.Landscape(spec, input, hidden, val_data).correct(0, n)`` - n random
draws (PyTorch default init, the M task's "torch" scheme) of GRU and rnn-tanh at (2,2), (2,4),
(4,2), (4,4), evaluated on the 2000 validation sequences of First (10^4 draws per size; 2000 with
--quick). Baseline: per draw, a fresh torch model (nn.Embedding, nn.GRU/nn.RNN, nn.Linear with
torch's default init) runs the 2000 sequences as one batch under no_grad and the accuracy is
taken from the last state; timed on a slice of draws, interleaved with rnnlab.

Also reported: the fraction of the machine's float32 peak the kernel reaches. The peak is
measured with a large jnp matmul (best of several, all cores); the kernel's useful work per
model is counted with XLA's cost analysis of the cell's own step (recurrent part, once per
distinct prefix), its input projection (once per word) and the readout (once per sequence).
Target: >= 25% of peak.

    python benchmarks/random_landscape.py [--quick]
"""
from __future__ import annotations

import time

import numpy as np

try:
    from . import common
except ImportError:       # run as a script
    import common

WORKLOAD = "random_landscape"
TARGET_PEAK = 0.25
TORCH_CELLS = {"gru": "GRU", "rnn-tanh": "RNN", "lstm": "LSTM"}


def config(quick: bool) -> dict:
    return {"cells": ["gru", "rnn-tanh"], "sizes": [[2, 2], [2, 4], [4, 2], [4, 4]],
            "draws": 2000 if quick else 10_000, "torch_draws": 10 if quick else 30, "n_val": 2000,
            "reps": 2 if quick else 3, "pinned_workers": True}


def _val(n_val: int):
    from rnnlab import tasks
    return tasks.splits("first", 0, {"train": 32, "val": n_val, "test": 32})["val"]


# ----------------------------------------------------------------------------- peak and flops


def peak_gflops(n: int = 1024, reps: int = 20) -> float:
    """Best float32 matmul throughput of this process (GFLOP/s, 2 n^3 per product). 20 products
    of ~10 ms: with 5, a busy core on the shared machine sometimes halved the best one (a low
    peak flatters every fraction of it)."""
    import jax
    import jax.numpy as jnp
    a = jnp.ones((n, n), jnp.float32)
    b = jnp.ones((n, n), jnp.float32) * 0.5
    f = jax.jit(lambda a, b: a @ b)
    common.block(f(a, b))
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        common.block(f(a, b))
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def _xla_flops(f, *args) -> float:
    ca = f.lower(*args).compile().cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0]
    return float(ca.get("flops", 0.0)) + float(ca.get("transcendentals", 0.0))


def useful_flops_per_model(spec, E: int, H: int, plan, n_seq: int) -> float:
    """XLA-counted FLOPs of the work one model needs (transcendentals count 1)."""
    import jax
    import jax.numpy as jnp
    from rnnlab.engine import model as mdl
    cell = spec.cell_def
    p = mdl.init_params(spec, jax.random.PRNGKey(0), E, H)
    s = cell.init_state(H, spec.jdtype)
    x = jnp.zeros((spec.input_size(E),), spec.jdtype)
    if cell.split:
        xp = cell.input_proj(p["cell"], x)
        rec = _xla_flops(jax.jit(cell.step_proj), p["cell"], s, xp)
        inp = _xla_flops(jax.jit(cell.input_proj), p["cell"], x)
    else:
        rec, inp = _xla_flops(jax.jit(cell.step), p["cell"], s, x), 0.0
    out = _xla_flops(jax.jit(lambda p, h: mdl.readout(spec, p, h)), p, jnp.zeros((H,), spec.jdtype))
    return plan.n_prefixes * rec + spec.vocab * inp + n_seq * out


TRANSCENDENTAL = ("tanh", "logistic", "exp", "log")


def transcendentals_per_step(spec, E: int, H: int) -> dict:
    """Elementwise transcendental evaluations of one recurrent step of one model, by primitive
    (from the step's jaxpr: the work no layout trick can remove)."""
    import jax
    import jax.numpy as jnp
    from rnnlab.engine import model as mdl
    cell = spec.cell_def
    p = mdl.init_params(spec, jax.random.PRNGKey(0), E, H)
    s = cell.init_state(H, spec.jdtype)
    x = jnp.zeros((spec.input_size(E),), spec.jdtype)
    counts: dict = {}

    def walk(jaxpr):
        for eq in jaxpr.eqns:
            if eq.primitive.name in TRANSCENDENTAL:
                n = int(np.prod(eq.outvars[0].aval.shape))
                counts[eq.primitive.name] = counts.get(eq.primitive.name, 0) + n
            for v in eq.params.values():
                if hasattr(v, "jaxpr") and hasattr(v.jaxpr, "eqns"):
                    walk(v.jaxpr)
    if cell.split:
        walk(jax.make_jaxpr(cell.step_proj)(p["cell"], s, cell.input_proj(p["cell"], x)).jaxpr)
    else:
        walk(jax.make_jaxpr(cell.step)(p["cell"], s, x).jaxpr)
    return counts


def transcendental_rates(n: int = 1 << 18, iters: int = 100, reps: int = 5) -> dict:
    """Elements per second (all cores) of XLA's own tanh, logistic, exp on a float32 array that
    stays in cache, each inside one fused loop (the speed the kernel's nonlinearities can reach)."""
    import jax
    import jax.numpy as jnp
    from rnnlab.analysis import landscape as L
    x = jnp.asarray(np.random.default_rng(0).standard_normal((64, n // 64)), jnp.float32)
    fns = {"tanh": jnp.tanh, "logistic": jax.nn.sigmoid, "exp": lambda y: jnp.exp(-jnp.abs(y))}
    out = {}
    for name, f in fns.items():
        g = jax.jit(lambda y, f=f: jax.lax.fori_loop(0, iters, lambda i, z: f(z) * 0.9 + x * 0.1, y),
                    compiler_options=L._compiler_options())         # the kernel's vector width
        common.block(g(x))
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            common.block(g(x))
            best = min(best, time.perf_counter() - t0)
        out[name] = n * iters / best
    return out


def transcendental_bound(counts: dict, rates: dict, n_prefixes: int) -> float:
    """Models/s if the kernel did nothing but its nonlinearities at the measured rates."""
    sec = sum(c * n_prefixes / rates.get(k, rates["exp"]) for k, c in counts.items())
    return 1.0 / sec if sec > 0 else float("inf")


# ----------------------------------------------------------------------------- the two sides


def _landscape(cell: str, E: int, H: int, val):
    from rnnlab.analysis import landscape as L
    from rnnlab.experiments.common import model_spec
    spec = model_spec("first", cell, "torch")
    return L.Landscape(spec, E, H, val, seed=0), spec


def pinned_models_s(cell: str, E: int, H: int, draws: int, n_val: int) -> float | None:
    """Models/s when the draws are split over the pinned worker processes (one per core), as
    random-landscape runs them at paper scale; compilation and process start-up excluded (every
    worker runs a small block first). None where pinned workers are not used (1 core)."""
    from rnnlab.backends.local import LocalBackend, pinned_workers
    from rnnlab.experiments.random_landscape import landscape_shard
    k = pinned_workers()
    if not k:
        return None
    base = {"task": "first", "seed": 0, "n_val": n_val, "cell": cell, "init": "torch", "dtype": "float32",
            "input": E, "hidden": H, "emax": E, "hmax": H, "chunk": 128, "sample": 0}
    be = LocalBackend()
    try:
        list(be.map(landscape_shard, [dict(base, start=i * 128, n=128) for i in range(2 * k)], pinned=True))
        per = -(-draws // k)
        t0 = time.perf_counter()
        list(be.map(landscape_shard, [dict(base, start=10 ** 6 + i * per, n=per) for i in range(k)], pinned=True))
        return per * k / (time.perf_counter() - t0)
    finally:
        be.close()


class TorchDraws:
    def __init__(self, cell: str, E: int, H: int, val):
        import torch
        self.torch = torch
        self.X = torch.tensor(val.tokens, dtype=torch.long)
        self.Y = torch.tensor(val.labels, dtype=torch.long)
        self.cell, self.E, self.H = cell, E, H

    def __call__(self, n: int):
        torch = self.torch
        accs = []
        with torch.no_grad():
            for _ in range(n):
                emb = torch.nn.Embedding(10, self.E)
                rec = getattr(torch.nn, TORCH_CELLS[self.cell])(self.E, self.H, batch_first=True)
                lin = torch.nn.Linear(self.H, 2)
                out = rec(emb(self.X))[1]
                h = out[0] if isinstance(out, tuple) else out
                accs.append(float((lin(h[-1]).argmax(-1) == self.Y).float().mean()))
        return accs


def _best_threads(f: TorchDraws) -> int:
    import torch
    best, best_t = 1, float("inf")
    for _ in range(2):
        for t in (1, 2):
            torch.set_num_threads(t)
            t0 = time.perf_counter()
            f(2)
            if time.perf_counter() - t0 < best_t:
                best, best_t = t, time.perf_counter() - t0
    torch.set_num_threads(best)
    return best


def measure(cells, sizes, draws: int, torch_draws: int, n_val: int, reps: int, pinned_workers: bool = True) -> dict:
    val = _val(n_val)
    peak = peak_gflops()
    rates = transcendental_rates()
    rows = []
    for cell in cells:
        for E, H in sizes:
            ls, spec = _landscape(cell, E, H, val)
            t0 = time.perf_counter()
            ls.chunk_correct(0)                                   # compiles
            compile_s = time.perf_counter() - t0
            th = TorchDraws(cell, E, H, val)
            threads = _best_threads(th)
            t = common.interleave({"rnnlab": lambda: ls.correct(0, draws), "torch": lambda: th(torch_draws)}, reps)
            r_wall = common.median(t["rnnlab"]["wall"])
            b_wall = common.median(t["torch"]["wall"])
            r_mps, b_mps = draws / r_wall, torch_draws / b_wall
            flops = useful_flops_per_model(spec, E, H, ls.plan, len(val))
            frac = r_mps * flops / (peak * 1e9)
            counts = transcendentals_per_step(spec, E, H)
            bound = transcendental_bound(counts, rates, ls.plan.n_prefixes)
            pinned = pinned_models_s(cell, E, H, draws, n_val) if pinned_workers else None
            rows.append({"case": f"{cell} {E}x{H}", "draws": draws, "rnnlab_models_s": r_mps,
                         "pinned_models_s": pinned,
                         "torch_models_s": b_mps, "ratio": r_mps / b_mps,
                         "rnnlab_models_cpu_s": draws / common.median(t["rnnlab"]["cpu"]),
                         "mflop_per_model": flops / 1e6, "gflops": r_mps * flops / 1e9,
                         "peak_gflops": peak, "frac_peak": frac, "target": TARGET_PEAK,
                         "met": bool(frac >= TARGET_PEAK), "compile_s": compile_s, "fast_path": ls.fast,
                         "transcendentals_per_step": counts, "nonlinearity_bound_models_s": bound,
                         "frac_nonlinearity_bound": r_mps / bound,
                         "torch_threads": threads})
    return {"cases": rows, "peak_gflops": peak, "transcendental_rates": rates}


def paper_draws() -> int:
    """Draws per cell and size in random-landscape at paper scale (the paper's 10^6)."""
    from rnnlab.experiments.random_landscape import default_config
    return default_config("paper")["draws"]


def paper_grid_row(cases: list[dict]) -> dict:
    """Adds each case's time for the paper's draws, at the measured rate and at the nonlinearity
    bound, and returns the row that sums them over the cases."""
    n = paper_draws()
    for r in cases:
        rate = max(r["rnnlab_models_s"], r.get("pinned_models_s") or 0.0)
        r["paper_s"] = n / rate
        r["paper_floor_s"] = n / r["nonlinearity_bound_models_s"]
    return {"case": f"sum over {len(cases)} cases", "paper_s": sum(r["paper_s"] for r in cases),
            "paper_floor_s": sum(r["paper_floor_s"] for r in cases)}


def rnnlab_once(cell: str, E: int, H: int, draws: int, n_val: int) -> dict:
    ls, _ = _landscape(cell, E, H, _val(n_val))
    ls.correct(0, draws)
    return {}


def baseline_once(cell: str, E: int, H: int, torch_draws: int, n_val: int) -> dict:
    import torch
    torch.set_num_threads(1)
    TorchDraws(cell, E, H, _val(n_val))(torch_draws)
    return {}


def run(quick: bool = False, isolate: bool = True, memory: bool = True, **overrides) -> dict:
    cfg = {**config(quick), **overrides}
    kw = {k: cfg[k] for k in ("cells", "sizes", "draws", "torch_draws", "n_val", "reps", "pinned_workers")}
    res = common.run_child("random_landscape", "measure", kw) if isolate else measure(**kw)
    cases = res["cases"]
    total = paper_grid_row(cases)
    if memory:   # the largest size of each cell
        for r in cases:
            cell, size = r["case"].split()
            E, H = map(int, size.split("x"))
            if [E, H] != list(cfg["sizes"][-1]):
                continue
            r["rss_rnnlab_mb"] = common.peak_rss("random_landscape", "rnnlab_once",
                                                 {"cell": cell, "E": E, "H": H, "draws": cfg["draws"],
                                                  "n_val": cfg["n_val"]})
            r["rss_torch_mb"] = common.peak_rss("random_landscape", "baseline_once",
                                                {"cell": cell, "E": E, "H": H, "torch_draws": cfg["torch_draws"],
                                                 "n_val": cfg["n_val"]})
    return {"workload": WORKLOAD, "title": "random-draw accuracies vs one torch model at a time",
            "config": cfg, "cases": cases + [total], "peak_gflops": res.get("peak_gflops"),
            "columns": [("case", "case"), ("rnnlab_models_s", "rnnlab models/s"),
                        ("pinned_models_s", "pinned workers models/s"),
                        ("torch_models_s", "torch models/s"), ("ratio", "ratio"),
                        ("mflop_per_model", "MFLOP/model"), ("gflops", "GFLOP/s"),
                        ("frac_peak", "of peak"), ("target", "target"), ("met", "met"),
                        ("nonlinearity_bound_models_s", "tanh/exp bound models/s"),
                        ("frac_nonlinearity_bound", "of bound"),
                        ("paper_s", "paper draws s"), ("paper_floor_s", "paper floor s"),
                        ("compile_s", "compile s"), ("rss_rnnlab_mb", "rnnlab MB"), ("rss_torch_mb", "torch MB")],
            "notes": [f"{cfg['draws']} draws per size on {cfg['n_val']} validation sequences; torch timed on "
                      f"{cfg['torch_draws']} draws per size; medians of {cfg['reps']} interleaved rounds",
                      "rnnlab models/s: one process, one chunk stream per core; pinned workers: the same "
                      "draws split over one worker process per core, pinned to it (how random-landscape runs "
                      "blocks of >= 50,000 draws), start-up and compilation excluded",
                      f"peak = best float32 {1024}^3 matmul of the same process: {res.get('peak_gflops', 0):.1f} GFLOP/s",
                      "MFLOP/model = useful work counted by XLA's cost analysis (steps once per distinct "
                      "prefix; padding and recomputation not counted)",
                      "MB = peak RSS of a fresh process running that side once, for the largest size",
                      "tanh/exp bound = models/s if a model cost only its nonlinearities (tanh, logistic, "
                      "exp per step from the cell's jaxpr, once per distinct prefix) at the rates XLA reaches "
                      "in a cache-resident fused loop in this process: "
                      + ", ".join(f"{k} {v / 1e9:.2f} G/s" for k, v in (res.get("transcendental_rates") or {}).items())
                      + ". A GFLOP count treats a tanh as 1 flop; on this CPU one costs ~10-30 vector "
                      "instructions, which is why the fraction of matmul peak stays low",
                      f"paper draws s = the paper's {paper_draws():,} draws of that size at the faster of the two "
                      "measured rates (one process, pinned workers); paper floor s = the same draws at the tanh/exp "
                      "bound (no layout that evaluates the same nonlinearities can be faster on this machine); the "
                      "last row sums the cases: random-landscape's draws at paper scale, without its trained inits"]}


if __name__ == "__main__":
    raise SystemExit(common.cli(run))
