"""Population training against what a user would otherwise run: one torch model at a time.

rnnlab: one epoch of a population of M models (own batch orders, own Adam states) on Mehta's
First task (8000 training sequences of 10 words), batch 32, as ``engine.train.train`` runs it
(``run_epoch``: on a multi-core CPU the population runs in concurrent shards).
Baseline: ONE torch model (nn.Embedding -> nn.GRU -> nn.Linear on the last state,
cross-entropy, torch.optim.Adam lr 1e-3, batch 32, reshuffled every epoch) trained for one epoch
on the same data; M such models cost M times that. torch gets its faster thread setting (1 or 2
threads, measured first: with tiny models 1 thread wins, and on a busy machine 2 threads can be
many times slower). Both run in the same process, interleaved; medians over the repetitions;
ratio = M * torch_epoch / rnnlab_epoch. Targets: >= 50x at (input 4, hidden 4), >= 15x at (15, 16).

    python benchmarks/train_population.py [--quick]
"""
from __future__ import annotations

import time

try:
    from . import common
except ImportError:       # run as a script
    import common

WORKLOAD = "train_population"
TARGETS = {(4, 4): 50.0, (15, 16): 15.0}
TORCH_CELLS = {"gru": "GRU", "rnn-tanh": "RNN", "lstm": "LSTM"}


def config(quick: bool) -> dict:
    return {"cell": "gru", "sizes": [[4, 4], [15, 16]], "models": 96,
            "n_train": 1600 if quick else 8000, "reps": 2 if quick else 3}


# ----------------------------------------------------------------------------- the two sides


def _data(n_train: int):
    from rnnlab import tasks
    d = tasks.splits("first", 0, {"train": n_train, "val": 200, "test": 200})
    return d["train"]


class RnnlabEpoch:
    """One epoch of a population of `models` models of (cell, E, H), as ``engine.train.train``
    runs it (``run_epoch``: the compiled epoch, in concurrent shards on a multi-core CPU)."""

    def __init__(self, cell: str, E: int, H: int, models: int, train, shards: int | None = None):
        import jax
        import jax.numpy as jnp
        import numpy as np
        from rnnlab.engine import model as mdl
        from rnnlab.engine.population import make_population
        from rnnlab.engine.protocols import MEHTA
        from rnnlab.engine.train import device_data, epoch_protocol, init_opt_state, n_shards, run_epoch
        from rnnlab.experiments.common import model_spec
        spec = model_spec("first", cell, "torch")
        pop = make_population(spec, E, H, np.arange(models))
        dev = device_data(train, spec.jdtype)
        n_batches = -(-len(train) // MEHTA.batch_size)
        keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(models))
        self.args = (spec, epoch_protocol(MEHTA), pop.hmax, n_batches, pop.params,
                     init_opt_state(MEHTA, pop.params), pop.mask, jnp.full(models, 1e-3, spec.jdtype),
                     jnp.ones(models, bool), keys, 1, dev)
        self.kw = {"positions": mdl.scored_positions(train.target_mask),
                   "full_length": mdl.full_length(train.tokens, train.lengths),
                   "shards": n_shards(models) if shards is None else shards}
        self.shards = self.kw["shards"]
        self.fn = run_epoch
        self.n_batches = n_batches

    def __call__(self):
        return common.block(self.fn(*self.args, **self.kw))


class TorchEpoch:
    """One epoch of ONE fresh torch model (embedding, recurrent layer, linear readout, Adam)."""

    def __init__(self, cell: str, E: int, H: int, train, seed: int = 0):
        import torch
        self.torch = torch
        self.X = torch.tensor(train.tokens, dtype=torch.long)
        self.Y = torch.tensor(train.labels, dtype=torch.long)
        self.cell, self.E, self.H, self.seed = cell, E, H, seed

    def __call__(self, n_batches: int | None = None):
        torch = self.torch
        torch.manual_seed(self.seed)
        emb = torch.nn.Embedding(10, self.E)
        rec = getattr(torch.nn, TORCH_CELLS[self.cell])(self.E, self.H, batch_first=True)
        lin = torch.nn.Linear(self.H, 2)
        params = list(emb.parameters()) + list(rec.parameters()) + list(lin.parameters())
        opt = torch.optim.Adam(params, lr=1e-3)
        n = len(self.X)
        perm = torch.randperm(n)
        nb = -(-n // 32) if n_batches is None else n_batches
        for b in range(nb):
            idx = perm[b * 32:(b + 1) * 32]
            opt.zero_grad()
            out = rec(emb(self.X[idx]))[1]
            h = out[0] if isinstance(out, tuple) else out          # LSTM: (h, c)
            loss = torch.nn.functional.cross_entropy(lin(h[-1]), self.Y[idx])
            loss.backward()
            opt.step()
        return float(loss.detach())


class TorchFuncEpoch:
    """The strongest PyTorch peer: the same population of M models in one program, as a skilled
    torch user writes it - the cell as explicit tensor ops (functional, per model), per-example
    gradients of the whole population by ``torch.func.vmap(grad(loss))`` over the model axis,
    each model with its own batch order, and one ``torch.optim.Adam`` over the stacked [M, ...]
    parameters (Adam is elementwise: M independent Adams with their own moments)."""

    def __init__(self, cell: str, E: int, H: int, models: int, train, seed: int = 0):
        import torch
        from torch.func import grad, vmap
        if cell not in ("gru", "rnn-tanh"):
            raise ValueError(f"torch.func peer: gru or rnn-tanh, got {cell!r}")
        self.torch, self.cell, self.E, self.H, self.M = torch, cell, E, H, models
        self.X = torch.tensor(train.tokens, dtype=torch.long)
        self.Y = torch.tensor(train.labels, dtype=torch.long)
        g = 3 if cell == "gru" else 1
        gen = torch.Generator().manual_seed(seed)
        u = lambda *shape, k: (torch.rand(models, *shape, generator=gen) * 2 - 1) * k   # noqa: E731
        k = H ** -0.5
        self.params = {"emb": torch.randn(models, 10, E, generator=gen), "W_ih": u(g * H, E, k=k),
                       "W_hh": u(g * H, H, k=k), "b_ih": u(g * H, k=k), "b_hh": u(g * H, k=k),
                       "W_out": u(2, H, k=k), "b_out": u(2, k=k)}
        for v in self.params.values():
            v.requires_grad_(True)
        self.opt = torch.optim.Adam(list(self.params.values()), lr=1e-3)
        self.grads = vmap(grad(self._loss))
        self.gen = gen

    def _loss(self, p, x, y):
        torch = self.torch
        e = p["emb"][x]                                           # [B, T, E]
        gi = e @ p["W_ih"].T + p["b_ih"]                          # [B, T, G*H]
        h = torch.zeros(x.shape[0], self.H)
        for t in range(x.shape[1]):
            gh = h @ p["W_hh"].T + p["b_hh"]
            if self.cell == "gru":
                ir, iz, i_n = gi[:, t].chunk(3, -1)
                hr, hz, hn = gh.chunk(3, -1)
                r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                h = (1 - z) * torch.tanh(i_n + r * hn) + z * h
            else:
                h = torch.tanh(gi[:, t] + gh)
        return torch.nn.functional.cross_entropy(h @ p["W_out"].T + p["b_out"], y)

    def __call__(self, n_batches: int | None = None):
        torch = self.torch
        n = len(self.X)
        perm = torch.stack([torch.randperm(n, generator=self.gen) for _ in range(self.M)])   # [M, n]
        nb = -(-n // 32) if n_batches is None else n_batches
        for b in range(nb):
            idx = perm[:, b * 32:(b + 1) * 32]                    # each model's own batch
            g = self.grads(self.params, self.X[idx], self.Y[idx])
            for name, v in self.params.items():
                v.grad = g[name]
            self.opt.step()
        with torch.no_grad():
            return float(self._loss({k: v[0] for k, v in self.params.items()}, self.X[:32], self.Y[:32]))


def best_torch_threads(f: TorchEpoch) -> int:
    """The faster of 1 and 2 intra-op threads for this model (20 batches each, twice)."""
    import torch
    best, best_t = 1, float("inf")
    nb = min(20, -(-len(f.X) // 32))
    for _ in range(2):
        for t in (1, 2):
            torch.set_num_threads(t)
            t0 = time.perf_counter()
            f(nb)
            dt = time.perf_counter() - t0
            if dt < best_t:
                best, best_t = t, dt
    torch.set_num_threads(best)
    return best


# ----------------------------------------------------------------------------- measurements


def measure_case(cell: str, E: int, H: int, models: int, n_train: int, reps: int) -> dict:
    """Interleaved timing of one (cell, E, H) case in this process."""
    train = _data(n_train)
    (rn, t_setup) = common.timed(lambda: RnnlabEpoch(cell, E, H, models, train))
    _, t_first = common.timed(rn)                   # compiles (persistent cache off in children)
    fns = {"rnnlab": rn}
    if rn.shards > 1:                               # the same epoch as one computation, for reference
        one = RnnlabEpoch(cell, E, H, models, train, shards=1)
        one()
        fns["rnnlab_1"] = one
    th = TorchEpoch(cell, E, H, train)
    threads = best_torch_threads(th)
    th()                                            # warm-up
    fns["torch"] = th
    if cell in ("gru", "rnn-tanh"):
        tf = TorchFuncEpoch(cell, E, H, models, train)
        tf(2)                                       # warm-up (same thread setting as the loop)
        fns["torch_func"] = tf
    t = common.interleave(fns, reps)
    r_wall, b_wall = common.median(t["rnnlab"]["wall"]), common.median(t["torch"]["wall"])
    r_cpu, b_cpu = common.median(t["rnnlab"]["cpu"]), common.median(t["torch"]["cpu"])
    one_wall = common.median(t["rnnlab_1"]["wall"]) if "rnnlab_1" in t else r_wall
    target = TARGETS.get((E, H))
    ratio = models * b_wall / r_wall
    return {"case": f"{cell} {E}x{H}, M={models}", "batches": rn.n_batches, "reps": reps,
            "rnnlab_epoch_s": r_wall, "rnnlab_1shard_epoch_s": one_wall, "shards": rn.shards,
            "torch_model_epoch_s": b_wall, "torch_M_epochs_s": models * b_wall,
            "ratio": ratio, "ratio_1shard": models * b_wall / one_wall, "ratio_cpu": models * b_cpu / r_cpu,
            "target": target, "met": None if target is None else bool(ratio >= target),
            "compile_s": max(t_first - r_wall, 0.0), "first_call_s": t_first, "setup_s": t_setup,
            "torch_threads": threads, "rnnlab_walls": t["rnnlab"]["wall"], "torch_walls": t["torch"]["wall"],
            "torch_func_epoch_s": common.median(t["torch_func"]["wall"]) if "torch_func" in t else None,
            "ratio_func": common.median(t["torch_func"]["wall"]) / r_wall if "torch_func" in t else None}


def rnnlab_once(cell: str, E: int, H: int, models: int, n_train: int) -> dict:
    rn = RnnlabEpoch(cell, E, H, models, _data(n_train))
    rn()
    return {}


def baseline_once(cell: str, E: int, H: int, n_train: int) -> dict:
    import torch
    torch.set_num_threads(1)
    TorchEpoch(cell, E, H, _data(n_train))()
    return {}


def run(quick: bool = False, isolate: bool = True, memory: bool = True, **overrides) -> dict:
    """All cases. isolate: measure each case in a fresh process (cold compile, clean memory)."""
    cfg = {**config(quick), **overrides}
    cases = []
    for E, H in cfg["sizes"]:
        kw = dict(cell=cfg["cell"], E=int(E), H=int(H), models=int(cfg["models"]), n_train=int(cfg["n_train"]),
                  reps=int(cfg["reps"]))
        r = common.run_child("train_population", "measure_case", kw) if isolate else measure_case(**kw)
        if memory:
            mkw = {k: kw[k] for k in ("cell", "E", "H", "models", "n_train")}
            r["rss_rnnlab_mb"] = common.peak_rss("train_population", "rnnlab_once", mkw)
            r["rss_torch_mb"] = common.peak_rss("train_population", "baseline_once",
                                                {k: mkw[k] for k in ("cell", "E", "H", "n_train")})
        cases.append(r)
    return {"workload": WORKLOAD, "title": "population training vs one torch model at a time (one epoch)",
            "config": cfg, "cases": cases,
            "columns": [("case", "case"), ("rnnlab_epoch_s", "rnnlab epoch s"), ("shards", "shards"),
                        ("torch_model_epoch_s", "torch 1 model s"), ("ratio", "ratio (wall)"),
                        ("ratio_1shard", "ratio 1 shard"), ("ratio_cpu", "ratio (cpu)"),
                        ("torch_func_epoch_s", "torch.func M s"), ("ratio_func", "vs torch.func"),
                        ("target", "target"), ("met", "met"),
                        ("compile_s", "compile s"), ("torch_threads", "torch thr"),
                        ("rss_rnnlab_mb", "rnnlab MB"), ("rss_torch_mb", "torch MB")],
            "notes": [f"First task, {cfg['n_train']} training sequences, batch 32; medians of "
                      f"{cfg['reps']} interleaved repetitions; ratio = M x torch epoch / rnnlab epoch",
                      "rnnlab = engine.train.run_epoch, what train() runs: the population in `shards` "
                      "concurrent shards (threads); 'ratio 1 shard' = the same epoch as one computation",
                      "ratio (cpu) uses process CPU seconds instead of wall time (rnnlab may use both cores)",
                      "vs torch.func = the whole population's epoch with torch.func (vmap(grad) over the models, "
                      "explicit cell ops, one Adam over stacked parameters) / rnnlab's epoch: the strongest peer",
                      "MB = peak RSS of a fresh process running that side once (includes the Python/JAX or "
                      "torch runtime)"]}


if __name__ == "__main__":
    raise SystemExit(common.cli(run))
