"""A population of 30 inits against the same 30 models trained one by one, both with rnnlab.

Both sides call ``engine.train.train`` (Mehta's protocol without patience, so every model runs
every epoch) on First: the population once with 30 seeds, then each seed alone. Same models,
same batch orders, same engine: the ratio is what stacking models on a leading axis buys over
a Python loop over models. Compilation is excluded (one warm-up call of each shape first);
medians of interleaved repetitions. The baseline a user would otherwise write (one torch model
at a time) is train_population.py.

    python benchmarks/population_vs_one_by_one.py [--quick]
"""
from __future__ import annotations

try:
    from . import common
except ImportError:       # run as a script
    import common

WORKLOAD = "population_vs_one_by_one"


def config(quick: bool) -> dict:
    return {"cell": "gru", "input": 4, "hidden": 4, "inits": 30, "epochs": 1 if quick else 3,
            "n_train": 1600 if quick else 8000, "reps": 2 if quick else 3}


def measure(cell: str, input: int, hidden: int, inits: int, epochs: int, n_train: int, reps: int) -> dict:
    import numpy as np

    from rnnlab import tasks
    from rnnlab.engine.population import make_population
    from rnnlab.engine.protocols import MEHTA
    from rnnlab.engine.train import train
    from rnnlab.experiments.common import model_spec
    data = tasks.splits("first", 0, {"train": n_train, "val": 2000, "test": 3000})
    spec = model_spec("first", cell, "torch")
    prot = MEHTA.with_(patience=None)
    seeds = np.arange(inits)
    fit = lambda s: train(make_population(spec, input, hidden, s), prot, data, max_epochs=epochs,  # noqa: E731
                          progress=False)
    out = {}

    def population():
        out["pop"] = fit(seeds)

    def one_by_one():
        out["solo"] = [fit(seeds[i:i + 1]) for i in range(inits)]
    fit(seeds[:1]), fit(seeds)                       # compile both shapes
    t = common.interleave({"population": population, "one_by_one": one_by_one}, reps)
    pop_s, solo_s = common.median(t["population"]["wall"]), common.median(t["one_by_one"]["wall"])
    worst = 0.0
    for i, r in enumerate(out["solo"]):
        a = out["pop"].summary.best_val_acc.to_numpy()[i]
        worst = max(worst, abs(float(a) - float(r.summary.best_val_acc.to_numpy()[0])))
    return {"case": f"{cell} {input}x{hidden}, {inits} inits, {epochs} epochs, {n_train} train",
            "population_s": pop_s, "one_by_one_s": solo_s, "ratio": solo_s / pop_s,
            "max_best_acc_diff": worst, "reps": reps}


def run(quick: bool = False, isolate: bool = True, memory: bool = False, **overrides) -> dict:
    kw = {**config(quick), **overrides}
    r = common.run_child(WORKLOAD, "measure", kw) if isolate else measure(**kw)
    for k in ("peak_rss_mb", "children_peak_rss_mb", "child_wall_s"):
        r.pop(k, None)
    return {"workload": WORKLOAD, "title": "a population of inits vs the same models one by one (rnnlab both)",
            "config": kw, "cases": [r],
            "columns": [("case", "case"), ("population_s", "population s"), ("one_by_one_s", "one by one s"),
                        ("ratio", "ratio"), ("max_best_acc_diff", "max |acc diff|")],
            "notes": [f"train() with Mehta's protocol without patience, medians of {kw['reps']} interleaved "
                      "repetitions, compilation excluded; max |acc diff| compares each model's best val acc "
                      "in the population with its solo run (float32)"]}


if __name__ == "__main__":
    raise SystemExit(common.cli(run))
