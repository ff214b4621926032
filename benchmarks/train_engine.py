"""The training engine against the engine it replaced, in the same run, at the papers' sizes.

One Mehta epoch of First (8000 sequences of 10 words, batch 32, Adam 1e-3, each model its own
batch order) for a population of 96 models, for rnn-tanh and gru at input 4 and hidden 2, 4, 8
and 16 (Mehta's grid spans hidden 2-16):

- old: the models-first epoch (engine.train.train_epoch: ``vmap`` over the models, XLA's dot
  kernels, each model's batch order drawn inside it by jax.random.permutation), which trained
  every population before issue 17 (:func:`models_first_epoch`);
- new: what rnnlab runs (``RNNLAB_ENGINE=auto``: engine.lanes, the model axis on the vector
  lanes, up to hidden 4; the models-first epoch above it, where it measured faster, with the
  batch orders drawn by each shard in NumPy).

Both run through ``engine.train.run_epoch`` (concurrent shards on a multi-core CPU),
interleaved, in a fresh process per case (no persistent compilation cache: the first call
compiles cold); the epoch times are medians of the repetitions. Also reported, for the new
engine: model-epochs per second, GFLOP/s of useful work (XLA's flop count of one recurrent step
forward and backward for a batch, transcendentals counted as one, times the steps, plus the
read-out's, times batches and models) and the fraction of
this process's float32 peak, measured in the same run as the best 1024x1024 matmul
(random_landscape.peak_gflops; XLA's matmul uses every core, as the sharded epoch does); compile
s = the first call minus the median epoch (cold), and the warm call is the epoch itself.

A Mehta epoch is followed by a validation pass (First's 2000 validation sequences), so the
protocol's epoch is also timed whole: old = the models-first epoch + ``engine.population.
evaluate`` (``run_evaluate``, the pass every run used before engine.prefix), new = the new
epoch + the pass ``engine.train.train`` takes (``engine.prefix.PopulationEval`` under
``RNNLAB_EVAL=auto`` for a run of this size); "old/new ep+val" is their ratio.

Targets (issue 17): new >= 5x old, and >= 25% of peak.

    python benchmarks/train_engine.py [--quick]
    RNNLAB_ENGINE=lanes python benchmarks/train_engine.py     # the lane kernel at every size
"""
from __future__ import annotations

import os
from contextlib import contextmanager

try:
    from . import common, random_landscape, train_population
except ImportError:       # run as a script
    import common
    import random_landscape
    import train_population

WORKLOAD = "train_engine"
TARGET_RATIO = 5.0
TARGET_PEAK = 0.25


def config(quick: bool) -> dict:
    return {"cells": ["rnn-tanh", "gru"], "input": 4, "hiddens": [2, 4, 8, 16] if not quick else [2, 16],
            "models": 96, "n_train": 1600 if quick else 8000, "reps": 2 if quick else 3}


def _val():
    from rnnlab import tasks
    return tasks.splits("first", 0, {"train": 32, "val": 2000, "test": 32})["val"]


def useful_flops(spec, E: int, H: int, train, batch: int = 32) -> float:
    """Useful flops of one model's batch gradient: XLA's count (+ transcendentals) of one
    recurrent step forward and backward (the cell's step and its vjp) for the batch, times the
    sequence length, plus the read-out's loss and gradient at the scored positions. (XLA counts
    a loop's body once, so the step is counted on its own; the embedding gather and the Adam
    update are not counted.)"""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from rnnlab.engine import model as mdl
    from rnnlab.engine.population import make_population
    pop = make_population(spec, E, H, np.arange(1))
    p = jax.tree_util.tree_map(lambda a: a[0], pop.params)
    cell = spec.cell_def
    s = jnp.zeros((batch, cell.state_mult * H), spec.jdtype)
    x = jnp.zeros((batch, E), spec.jdtype)

    def step_fb(pc, s, x):
        out, vjp = jax.vjp(jax.vmap(lambda st, xt: cell.step(pc, st, xt)), s, x)
        return vjp(out)
    T = int(train.tokens.shape[1])
    n_pos = len(mdl.scored_positions(train.target_mask) or range(T))

    def head(q, h):
        logits = h @ q["W"].T + (q["b"] if "b" in q else 0.0)
        return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[:, 0])
    h = jnp.zeros((batch, H), spec.jdtype)
    return T * _xla_flops(jax.jit(step_fb), p["cell"], s, x) + \
        n_pos * _xla_flops(jax.jit(jax.value_and_grad(head, argnums=(0, 1))), p["out"], h)


def _xla_flops(f, *args) -> float:
    ca = f.lower(*args).compile().cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0]
    return float(ca.get("flops", 0.0)) + float(ca.get("transcendentals", 0.0))


class Validation:
    """One validation pass of an Epoch's population over `val`: population.evaluate (run_evaluate,
    sharded as train runs it) when `kind` is "vmap", else the prefix kernel train() picks."""

    def __init__(self, kind: str, epoch: "Epoch", val, E: int):
        from rnnlab.engine import model as mdl
        from rnnlab.engine import prefix
        from rnnlab.engine.train import device_data, run_evaluate
        spec, _, hmax, _, params, _, mask = epoch.inner.args[:7]
        m = int(mask["out"]["W"].shape[0])
        if kind == "vmap":
            dev = device_data(val, spec.jdtype)
            kw = {"positions": mdl.scored_positions(val.target_mask),
                  "full_length": mdl.full_length(val.tokens, val.lengths)}
            self.fn = lambda: run_evaluate(spec, "xent", hmax, params, mask, dev, **kw)     # noqa: E731
        else:
            ev = prefix.PopulationEval(spec, val, "xent", E, hmax, m)
            self.fn = lambda: ev(params, mask)                                              # noqa: E731
        self.kind = kind

    def __call__(self):
        return common.block(self.fn())


def models_first_epoch(spec, protocol, hmax: int, n_batches: int, params, opt_state, mask, lr, active, keys,
                       epoch, data, positions=None, full_length: bool = False, shards: int | None = None):
    """The epoch every population trained with before issue 17 (old): run_epoch's models-first
    path as it was, each model's batch order drawn inside the compiled epoch
    (jax.random.permutation), in the same concurrent shards."""
    from functools import partial
    import numpy as np
    from rnnlab.engine.train import n_shards, sharded, train_epoch
    m = int(np.shape(lr)[0])
    fn = partial(train_epoch, spec, protocol, hmax, n_batches, positions=positions, full_length=full_length)
    return sharded(lambda p, o, mk, l, a, k: fn(p, o, mk, l, a, k, epoch, data), m,
                   n_shards(m) if shards is None else shards,
                   (("m", params), ("m", opt_state), ("m", mask), ("m", lr), ("m", active), ("m", keys)), inactive=4)


class Epoch:
    """One epoch of the population: through run_epoch with RNNLAB_ENGINE=`engine`, or, for
    engine "old", :func:`models_first_epoch`."""

    def __init__(self, engine: str, cell: str, E: int, H: int, models: int, train):
        from rnnlab.engine.train import engine_kind
        self.engine = "vmap" if engine == "old" else engine
        self.inner = train_population.RnnlabEpoch(cell, E, H, models, train)
        if engine == "old":
            self.inner.fn = models_first_epoch
        a = self.inner.args
        with _engine(self.engine):
            self.kind = engine_kind(a[0], a[2], 32, self.inner.kw["full_length"],
                                    models=-(-models // max(1, self.inner.shards)))

    def __call__(self):
        with _engine(self.engine):
            return self.inner()


@contextmanager
def _engine(name: str):
    """RNNLAB_ENGINE=`name` within the block, the previous value (or none) after it."""
    prev = os.environ.get("RNNLAB_ENGINE")
    os.environ["RNNLAB_ENGINE"] = name
    try:
        yield
    finally:
        if prev is None:
            os.environ.pop("RNNLAB_ENGINE", None)
        else:
            os.environ["RNNLAB_ENGINE"] = prev


def measure_case(cell: str, E: int, H: int, models: int, n_train: int, reps: int) -> dict:
    from rnnlab.experiments.common import model_spec
    train = train_population._data(n_train)
    peak = random_landscape.peak_gflops()
    new_engine = os.environ.get("RNNLAB_ENGINE", "auto") or "auto"      # RNNLAB_ENGINE=lanes: lanes everywhere
    sides = {"old": Epoch("old", cell, E, H, models, train), "new": Epoch(new_engine, cell, E, H, models, train)}
    val = _val()
    vals = {"old_val": Validation("vmap", sides["old"], val, E), "new_val": Validation("prefix", sides["new"], val, E)}
    first = {k: common.timed(f)[1] for k, f in {**sides, **vals}.items()}          # cold compile + one call
    t = common.interleave({**sides, **vals}, reps)
    old, new = common.median(t["old"]["wall"]), common.median(t["new"]["wall"])
    old_v, new_v = common.median(t["old_val"]["wall"]), common.median(t["new_val"]["wall"])
    nb = sides["new"].inner.n_batches
    flops = useful_flops(model_spec("first", cell, "torch"), E, H, train) * nb * models
    ratio = old / new
    frac = flops / new / (peak * 1e9)
    return {"case": f"{cell} {E}x{H}, M={models}", "kernel_new": sides["new"].kind, "old_s": old, "new_s": new,
            "ratio": ratio, "target": TARGET_RATIO, "met": bool(ratio >= TARGET_RATIO and frac >= TARGET_PEAK),
            "model_epochs_per_s": models / new, "gflops": flops / new / 1e9, "peak_gflops": peak,
            "frac_peak": frac, "target_peak": TARGET_PEAK,
            "compile_old_s": max(first["old"] - old, 0.0),
            "compile_new_s": max(first["new"] - new, 0.0),
            "old_val_s": old_v, "new_val_s": new_v, "old_epval_s": old + old_v, "new_epval_s": new + new_v,
            "ratio_epval": (old + old_v) / (new + new_v),
            "compile_old_val_s": max(first["old_val"] - old_v, 0.0), "compile_new_val_s": max(first["new_val"] - new_v, 0.0),
            "shards": sides["new"].inner.shards, "old_walls": t["old"]["wall"], "new_walls": t["new"]["wall"]}


def run(quick: bool = False, isolate: bool = True, memory: bool = True, **overrides) -> dict:
    """Every (cell, hidden) case, each in a fresh process when `isolate` (cold compile)."""
    cfg = {**config(quick), **overrides}
    cases = []
    for cell in cfg["cells"]:
        for H in cfg["hiddens"]:
            kw = dict(cell=cell, E=int(cfg["input"]), H=int(H), models=int(cfg["models"]),
                      n_train=int(cfg["n_train"]), reps=int(cfg["reps"]))
            cases.append(common.run_child("train_engine", "measure_case", kw) if isolate else measure_case(**kw))
    new = os.environ.get("RNNLAB_ENGINE", "auto") or "auto"
    ratios = [c["ratio"] for c in cases]
    fracs = [c["frac_peak"] for c in cases]
    cases.append({"case": f"median over {len(cases)} cases", "ratio": common.median(ratios),
                  "ratio_epval": common.median([c["ratio_epval"] for c in cases]),
                  "frac_peak": common.median(fracs), "target": TARGET_RATIO, "target_peak": TARGET_PEAK,
                  "met": bool(common.median(ratios) >= TARGET_RATIO and common.median(fracs) >= TARGET_PEAK)})
    return {"workload": WORKLOAD, "title": "training engine vs the models-first engine it replaced (one epoch)",
            "config": cfg, "cases": cases,
            "columns": [("case", "case"), ("kernel_new", "new kernel"), ("old_s", "old epoch s"),
                        ("new_s", "new epoch s"), ("ratio", "old/new"), ("target", "target"),
                        ("model_epochs_per_s", "model-epochs/s"), ("gflops", "GFLOP/s"),
                        ("peak_gflops", "peak GFLOP/s"), ("frac_peak", "of peak"), ("target_peak", "target"),
                        ("met", "met"), ("compile_old_s", "compile old s"), ("compile_new_s", "compile new s"),
                        ("old_val_s", "old val s"), ("new_val_s", "new val s"), ("ratio_epval", "old/new ep+val"),
                        ("compile_old_val_s", "compile old val s"), ("compile_new_val_s", "compile new val s")],
            "notes": [f"First, {cfg['n_train']} training sequences, batch 32, Adam; {cfg['models']} models; medians "
                      f"of {cfg['reps']} interleaved repetitions; both through run_epoch (concurrent shards on a "
                      "multi-core CPU)",
                      "old = the models-first epoch as before issue 17 (batch orders drawn inside it by "
                      f"jax.random.permutation), new = RNNLAB_ENGINE={new}"
                      + ("; above hidden 4 auto runs the models-first epoch too, with batch orders drawn in NumPy "
                         "by each shard" if new == "auto" else ""),
                      "GFLOP/s = XLA's flop count (+ transcendentals) of one step forward and backward for a batch x "
                      "steps (+ the read-out's) x batches x models / the new epoch; peak = best float32 1024^3 matmul in the same process",
                      "compile s = first call - median epoch, in a fresh process without the compilation cache "
                      "(cold); the warm call costs one epoch",
                      "val s = one validation pass over First's 2000 validation sequences (old: population.evaluate, "
                      "new: the prefix kernel, engine.prefix); old/new ep+val = (old epoch + old val) / (new epoch + "
                      "new val), a whole epoch of the Mehta protocol"]}


if __name__ == "__main__":
    raise SystemExit(common.cli(run))
