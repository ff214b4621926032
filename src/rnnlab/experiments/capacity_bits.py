"""Capacity in bits per parameter on random labels (beyond the papers; Collins, Sohl-Dickstein &
Sussillo 2017, *Capacity and Trainability in Recurrent Neural Networks*).

Collins et al. found that, given enough training, every common cell stores about 5 bits per
parameter of random input-label pairs: capacity is set by the parameter count, not the cell,
while cells differ in how easily they are trained. Mehta's capacity-inits experiment (best of
30 inits similar for RNN and GRU) makes the same point with task accuracy; this experiment
measures it in bits.

Data: N sequences of Mehta's First task (the inputs only, from ``tasks.splits("first", ...)``)
whose labels are REPLACED by balanced random bits from a seeded generator. Each cell's models
(all hidden sizes x inits in one padded population) are trained on them with Mehta's protocol
without early stopping on validation (the "validation" set is the training set itself, so
learning-rate halving and the best checkpoint follow the training accuracy), and the number of
memorised bits is the mutual information between label and prediction for balanced binary
labels: bits = N (1 - H2(error rate)). The capacity of a model size is the maximum over N (and
inits) of its bits; bits per parameter = bits / n_params.

Every N of a cell trains on the same number of gradient steps: the N sequences are repeated
max(N)/N times to fill an epoch of max(N) rows (same shapes, so a cell compiles once).
"""
from __future__ import annotations

import zlib
from dataclasses import replace
from itertools import combinations

import numpy as np
import pandas as pd

from .. import tasks
from ..analysis import stats
from ..analysis.claims import Claim, Declaration
from ..engine import model as mdl
from ..engine.population import make_population
from ..engine.protocols import get as get_protocol
from ..engine.train import LANES_MAX_HIDDEN, train
from ..errors import ConfigError
from ..plots import style
from ..tasks.base import TaskData
from . import base
from .common import model_spec

NAME = "capacity-bits"
PAPER = "beyond"
ORDER = 3
SOURCE = "Collins, Sohl-Dickstein & Sussillo 2017 (ICLR), random-label capacity"
QUESTION = ("How many bits of random labels does each cell store per parameter, and is that number "
            "about the same for vanilla and gated cells (capacity separate from trainability)?")
VERSION = 2
ROUNDS = {"units": "inits", "offset": "init_offset"}

#: Collins et al.'s headline value (bits per parameter, long training, tuned hyperparameters)
PAPER_BITS_PER_PARAM = 5.0

CHOICES = {
    "data": "inputs: First-task sequences (10 words, vocabulary 10); labels: balanced random bits "
            "(rng seeded by (seed, N)); nested inputs: size N uses the first N sequences of one pool",
    "model": "embedding input 4 -> cell -> linear readout of the last state (Mehta's classifier); "
             "n_params counts every trainable parameter (embedding, cell, readout)",
    "training": "Mehta's protocol (Adam, batch 32, best checkpoint by accuracy) without patience and, "
                "by default, without lr halving (halve_lr=False): the accuracy that would drive both is "
                "the training accuracy itself (the 'validation' set is the training set), and halving "
                "at every dip of a noisy memorisation curve drove lr below 1e-6 within ~60 epochs in "
                "our trials, freezing memorisation far below capacity; halve_lr=True restores the rule. "
                "lr 1e-2 at every scale",
    "size_groups": "paper scale: one population per (cell, N, group of hidden sizes) - each size above 4 "
                   "alone, sizes up to 4 together (the lane kernel's range); quick: one population per "
                   "(cell, N). A model computes the same in any population (tested in float64), but padded "
                   "to the largest size a 2-unit model costs what a 16-unit one costs, and every "
                   "population compiles its own programs. Measured (one core each, side by side, empty "
                   "compilation cache, two runs): paper 344 and 378 s in one population per (cell, N), 172 s in groups (175 s "
                   "in one population per size); quick 15.5 s in one per (cell, N), 20.1 s in groups",
    "stop_when_memorised": "a model stops once it classifies all N random labels right (its "
                           "accuracy, hence its bits, cannot rise further); False trains every model "
                           "for max_epochs",
    "equal_steps": "every N gets the same number of gradient steps: an epoch holds "
                   "passes_per_epoch * max(N) rows, each of the N sequences repeated equally often "
                   "(4 passes per epoch x 50 epochs = 200 passes over max(N) rows at every scale; fewer, "
                   "longer epochs cut the per-epoch bookkeeping); accuracy is scored on the N sequences",
    "bits": "bits = N * (1 - H2(1 - train accuracy)) (label/prediction mutual information for "
            "balanced binary labels); capacity of a size = max over N and inits",
    "sizes": "quick: hidden {2, 4, 8}, N {64, 256}, 3 inits (2 left the claim undecided), 200 passes over max(N) rows as at "
             "paper scale (an earlier quick scale stopped at 100) (the largest "
             "sizes may memorise all 256 labels: their capacity is then a lower bound, flagged n_limited); "
             "paper: hidden {2, 4, 8, 16}, N {512, 2048}, 6 inits (3 left the claim undecided: 0.451 [0.176, 0.755] "
             "against < 0.693; 6 decide it: 0.409 [0.223, 0.595]), 200 passes over 2048 rows (4 per epoch x "
             "50 epochs). The paper scale is our choice (Collins et al. trained far longer, with tuned "
             "hyperparameters, on far more compute), sized to about 3 minutes on one core (its size groups; 5.5 min in one population per (cell, N)); a larger sweep, "
             "e.g. --set hiddens=[2,4,8,16,32] n_examples=[256,1024,4096,16384] max_epochs=300 "
             "passes_per_epoch=1, measured about 7 min per population (1-1.5 h) on 2 cores",
    "claim": "per model (cell, hidden size, init) its bits/param at its best N (a maximum over the fixed N "
             "conditions of one model, not over sampled inits); the cells are compared by the mean of log "
             "bits/param over their (hidden, init) models - the same hidden sizes in every cell, so the size "
             "effect cancels in the difference and only widens the Welch interval; the claim asks every pair of "
             "cells to be within a factor ratio_max (2): max over pairs of |mean log difference| (Welch, "
             "Bonferroni over pairs) < log 2; min effect log(2)/2 for the inits needed. (The former statistic "
             "bootstrapped a max over inits, whose bootstrap is inconsistent.)",
}


def default_config(scale: str) -> dict:
    cfg = {"seed": 0, "cells": ["rnn-tanh", "gru", "lstm"], "input": 4, "hiddens": [2, 4, 8],
           "n_examples": [64, 256], "inits": 3, "init": "torch", "lr": 0.01, "halve_lr": False,
           "max_epochs": 50, "passes_per_epoch": 4, "ratio_max": 2.0, "stop_when_memorised": True,
           "size_groups": False}
    if scale == "paper":
        cfg.update(hiddens=[2, 4, 8, 16], n_examples=[512, 2048], inits=6, size_groups=True)
    elif scale == "tiny":
        cfg.update(hiddens=[2, 4], n_examples=[32, 64], inits=1, max_epochs=3, passes_per_epoch=1,
                   cells=["gru"])
    return cfg


def validate(cfg: dict) -> None:
    for k in ("input", "inits", "max_epochs", "passes_per_epoch"):
        mdl.check_size(k, cfg[k])
    if not isinstance(cfg.get("size_groups", False), bool):
        raise ConfigError(f"size_groups: must be true or false, got {cfg['size_groups']!r}")
    if not cfg["hiddens"] or not cfg["n_examples"]:
        raise ConfigError("hiddens/n_examples: need at least one value each")
    if cfg["inits"] > 100 or len(cfg["hiddens"]) > 100:
        raise ConfigError("inits/hiddens: at most 100 inits and 100 hidden sizes")
    for h in cfg["hiddens"]:
        mdl.check_size("hiddens", h)
    for n in cfg["n_examples"]:
        mdl.check_size("n_examples", n)
        if n < 2:
            raise ConfigError(f"n_examples: need at least 2 sequences, got {n}")


# ----------------------------------------------------------------------------- data


def random_label_data(pool: TaskData, n: int, seed: int, rows: int) -> TaskData:
    """The first n sequences of `pool` with balanced random labels (rng (seed, n)), repeated
    rows // n times (every sequence equally often). The task code is untouched: only the label
    fields of a TaskData are rebuilt."""
    rng = np.random.default_rng([int(seed), int(n), 7])
    labels = rng.permutation(np.arange(n) % 2).astype(np.int32)
    d = pool.subset(np.arange(n))
    last = d.lengths - 1
    targets = np.zeros_like(d.targets)
    targets[np.arange(n), last] = labels
    accept = np.zeros_like(d.accept)
    accept[np.arange(n), last, labels] = True
    k = max(1, rows // n)
    rep = lambda a: np.concatenate([a] * k, axis=0)  # noqa: E731
    return TaskData(name="random-labels", tokens=rep(d.tokens), lengths=rep(d.lengths),
                    targets=rep(targets), target_mask=rep(d.target_mask), accept=rep(accept),
                    vocab=d.vocab, n_outputs=d.n_outputs, labels=rep(labels),
                    meta={"source": "first", "seed": int(seed), "n_unique": int(n), "repeats": k})


def h2(p) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(out, nan=0.0)


def bits_memorised(n, acc) -> np.ndarray:
    """N (1 - H2(error rate)): bits of balanced random binary labels recovered by the predictions."""
    return np.asarray(n, float) * (1.0 - h2(1.0 - np.asarray(acc, float)))


def _seed_base(seed: int, cell: str) -> int:
    """Model seeds depend on (seed, cell name, hidden index, init) only, not on the other cells."""
    return int(seed) * 10_000_000 + (zlib.crc32(cell.encode()) % 1000) * 10_000


# ----------------------------------------------------------------------------- shard


def capacity_shard(shard: dict) -> dict[str, pd.DataFrame]:
    """One cell and one or more N: the (hidden x init) models of the shard's hidden sizes in one
    padded population, trained once per N (the experiment gives each shard one N, so a kill
    loses at most one population).
    shard["nmax"] (default: the largest N of the shard) sets the pool the N sequences are taken
    from and the rows of an epoch. Tables: capacity (one row per model and N), curves."""
    cell = shard["cell"]
    spec = model_spec("first", cell, shard["init"], shard.get("dtype", "float32"))
    hid = np.repeat(np.asarray(shard["hiddens"], int), int(shard["inits"]))
    off = int(shard.get("init_offset", 0))
    inits = np.tile(np.arange(off, off + int(shard["inits"])), len(shard["hiddens"]))
    # a hidden size's index in the experiment's list (seeds depend on it, not on the shard)
    hids = shard.get("hidden_ids", list(range(len(shard["hiddens"]))))
    hidx = np.repeat(np.asarray(hids, int), int(shard["inits"]))
    seeds = [_seed_base(shard["seed"], cell) + int(k) * 100 + int(i) for k, i in zip(hidx, inits)]
    ns = sorted(int(n) for n in shard["n_examples"])
    nmax = int(shard.get("nmax", max(ns)))
    passes = int(shard["passes_per_epoch"])
    pool = tasks.splits("first", int(shard["seed"]), {"train": nmax})["train"]
    protocol = get_protocol("mehta").with_(lr=float(shard["lr"]), patience=None,
                                           max_epochs=int(shard["max_epochs"]),
                                           halve_on="val_acc_drop" if shard["halve_lr"] else "none",
                                           stop_acc=1.0 if shard["stop_when_memorised"] else None)
    caps, curves = [], []
    for n in ns:
        data = random_label_data(pool, n, shard["seed"], passes * nmax)
        score = random_label_data(pool, n, shard["seed"], nmax)     # same rows, fewer repeats
        pop = make_population(spec, int(shard["input"]), hid, seeds)
        res = train(pop, protocol, {"train": data, "val": score}, progress=False)
        s = res.summary
        acc = s["best_val_acc"].to_numpy(float)
        bits = bits_memorised(n, acc)
        caps.append(pd.DataFrame({
            "cell": cell, "hidden": s["hidden"].to_numpy(int), "init": inits, "seed": s["seed"],
            "n_params": s["n_params"].to_numpy(int), "n_examples": n, "repeats": data.meta["repeats"],
            "train_acc": acc, "bits": bits, "bits_per_param": bits / s["n_params"].to_numpy(float),
            "epochs": s["epochs"].to_numpy(int), "status": s["status"].astype(str)}))
        # models numbered as in one population of every hidden size: hidden index x inits + init
        gid = hidx * int(shard["inits"]) + (inits - off)
        c = res.curves
        curves.append(c.assign(cell=cell, n_examples=n, model=gid[c["model"].to_numpy(int)]))
    return {"capacity": pd.concat(caps, ignore_index=True), "curves": pd.concat(curves, ignore_index=True)}


def size_groups(hiddens) -> list[list[int]]:
    """Indices of `hiddens` trained in one population: every size above the lane kernel's
    largest (engine.train.LANES_MAX_HIDDEN) alone, the smaller ones together (the lane kernel
    pads them to at most that size), largest first. Padded to the largest size of one population,
    a 2-unit model costs what a 16-unit one costs; a population per size costs a compilation
    each (see CHOICES["size_groups"])."""
    hs = [int(h) for h in hiddens]
    order = sorted(range(len(hs)), key=lambda i: -hs[i])
    big = [[i] for i in order if hs[i] > LANES_MAX_HIDDEN]
    small = sorted((i for i in order if hs[i] <= LANES_MAX_HIDDEN), key=lambda i: hs[i])
    return big + ([small] if small else [])


def _shards(cfg: dict) -> list[dict]:
    """One shard per (cell, N), or per (cell, N, group of hidden sizes: :func:`size_groups`) if
    cfg["size_groups"]; largest N and size first (the longest ones start first)."""
    ns = sorted({int(n) for n in cfg["n_examples"]}, reverse=True)
    hs = [int(h) for h in cfg["hiddens"]]
    groups = size_groups(hs) if cfg.get("size_groups") else [list(range(len(hs)))]
    return [{"cell": c, "seed": int(cfg["seed"]), "init": cfg["init"], "input": int(cfg["input"]),
             "hiddens": [hs[i] for i in g], "inits": int(cfg["inits"]),
             **({"hidden_ids": list(g)} if len(g) < len(hs) else {}),
             "n_examples": [n], "nmax": ns[0], "lr": float(cfg["lr"]),
             "halve_lr": bool(cfg["halve_lr"]), "max_epochs": int(cfg["max_epochs"]),
             "stop_when_memorised": bool(cfg["stop_when_memorised"]),
             "passes_per_epoch": int(cfg["passes_per_epoch"]),
             **({"init_offset": int(cfg["init_offset"])} if cfg.get("init_offset") else {})}
            for c in cfg["cells"] for n in ns for g in groups]


def execute(ctx) -> dict[str, pd.DataFrame]:
    outs = ctx.map(capacity_shard, _shards(ctx.config), desc="capacity-bits")
    cap = pd.concat([o["capacity"] for o in outs], ignore_index=True)
    cap["capacity"] = False       # the row that sets the capacity of its (cell, hidden)
    cap.loc[cap.groupby(["cell", "hidden"])["bits"].idxmax(), "capacity"] = True
    return {"capacity": cap, "curves": pd.concat([o["curves"] for o in outs], ignore_index=True)}


# ----------------------------------------------------------------------------- claims


def per_size_capacity(cap: pd.DataFrame) -> pd.DataFrame:
    """Capacity (max bits over N and inits) per (cell, hidden)."""
    idx = cap.groupby(["cell", "hidden"])["bits"].idxmax()
    return cap.loc[idx, ["cell", "hidden", "n_params", "n_examples", "train_acc", "bits",
                         "bits_per_param"]].reset_index(drop=True)


COMPARABLE = Declaration(
    "bits-per-param-comparable",
    "Capacity is about the same per parameter for every cell (Collins et al. 2017): every pair of cells is within a "
    "factor {ratio:g} in mean log bits per parameter (each model at its best N).",
    "max over pairs of cells of |mean log(bits/param) difference| over (hidden, init) models (natural log)",
    float(np.log(2.0)), "<", float(np.log(2.0)) / 2, "normal", effect=False, planning={"sd": 0.7, "m": 3},
    units="(hidden, init) models per cell",
    paper="(beyond the papers) Collins et al. 2017: capacity is set by the parameter count, not the cell",
    figure="capacity")
DECLARATIONS = [COMPARABLE]


def model_bits(cap_all: pd.DataFrame) -> pd.DataFrame:
    """One row per model (cell, hidden, init): bits/param at its best N, and its log."""
    cap_all = cap_all if "init" in cap_all else cap_all.assign(init=0)
    m = cap_all.groupby(["cell", "hidden", "init"], as_index=False)["bits_per_param"].max()
    m["log_bpp"] = np.log(m["bits_per_param"].where(m["bits_per_param"] > 0))
    return m


def claims(tables: dict, cfg: dict) -> list[Claim]:
    cap = per_size_capacity(tables["capacity"])
    mb = model_bits(tables["capacity"])
    cells = [c for c in cfg["cells"] if (cap["cell"] == c).any()]
    n_max = int(tables["capacity"]["n_examples"].max())
    limited = cap[(cap["train_acc"] >= 1.0 - 1e-9) & (cap["n_examples"] >= n_max)]
    details = {"mean_log_bits_per_param": {c: float(mb[mb.cell == c].log_bpp.mean()) for c in cells},
               "paper_bits_per_param": PAPER_BITS_PER_PARAM,
               "n_limited": [f"{r.cell} h={r.hidden}" for r in limited.itertuples()],
               "n_limited_note": "these sizes memorised every label of the largest N: their capacity "
                                 "is only a lower bound (a larger N would raise it)",
               "per_size": cap.round(4).to_dict("records"),
               "note": (f"Collins et al. report ~{PAPER_BITS_PER_PARAM} bits/param after long, tuned training on far "
                        f"larger data sets; this run ('{cfg.get('scale', '?')}' scale: {cfg['max_epochs']} epochs, N up "
                        f"to {max(cfg['n_examples'])}) measures a lower bound. The verdict is about the ratio across "
                        "cells, not the absolute value.")}
    decl = replace(COMPARABLE, threshold=float(np.log(cfg["ratio_max"])), min_effect=float(np.log(cfg["ratio_max"])) / 2)
    pairs = list(combinations(cells, 2))
    lv = stats.bonferroni(decl.level(cfg), len(pairs))
    ests = [stats.absolute(stats.mean_difference(mb[mb.cell == a].log_bpp, mb[mb.cell == b].log_bpp, lv))
            for a, b in pairs]
    est = (stats.extreme(ests, "max", decl.level(cfg), "pairs of cells") if pairs
           else stats.undefined("max |mean log difference|", why="needs at least two cells"))
    if pairs:
        details["ratio_per_pair"] = {f"{a}/{b}": float(np.exp(e.value)) if e.defined else None
                                     for (a, b), e in zip(pairs, ests)}
    return [decl.decide(est, dict(ratio=cfg["ratio_max"]), details, scale=("inits", cfg["inits"]))]


# ----------------------------------------------------------------------------- figures


def figures(tables: dict, cfg: dict) -> dict:
    cap_all = tables["capacity"]
    cap = per_size_capacity(cap_all)
    cells = [c for c in cfg["cells"] if (cap["cell"] == c).any()]
    fig, axes = style.figure(1, 2, w=4.6, h=3.8)
    ax = axes[0][0]
    for c in cells:
        g = cap[cap["cell"] == c].sort_values("n_params")
        a = cap_all[cap_all["cell"] == c]
        ax.scatter(a["n_params"], np.maximum(a["bits"], 1e-2), s=10, alpha=0.35, color=style.color(c))
        ax.plot(g["n_params"], np.maximum(g["bits"], 1e-2), "o-", color=style.color(c), label=c)
    n_max = cap_all["n_examples"].max()
    lim = cap[(cap["train_acc"] >= 1.0 - 1e-9) & (cap["n_examples"] >= n_max)]
    if len(lim):
        ax.scatter(lim["n_params"], lim["bits"] * 1.15, marker="^", s=30, facecolor="none",
                   edgecolor="black", label="all labels of the largest N memorised (lower bound)")
    xs = np.array([cap["n_params"].min(), cap["n_params"].max()], float)
    ax.plot(xs, PAPER_BITS_PER_PARAM * xs, "k--", lw=0.8, label=f"{PAPER_BITS_PER_PARAM:g} bits/param (Collins)")
    ax.plot(xs, 1.0 * xs, "k:", lw=0.8, label="1 bit/param")
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo_y = max(float(np.nanmin(np.maximum(cap_all["bits"], 1e-2))), 1e-2)
    ax.set_ylim(lo_y / 1.5, PAPER_BITS_PER_PARAM * xs[1] * 12)   # room for the legend
    _plain_log_ticks(ax)
    ax.set_xlabel("parameters")
    ax.set_ylabel("bits memorised (max over N)")
    ax.set_title("Random-label capacity vs size\n(line: max over N; dots: every N and init)", fontsize=9)
    ax.legend(fontsize=6.5, loc="upper left", ncol=2)

    ax = axes[0][1]
    hiddens = sorted(cap["hidden"].unique())
    width = 0.8 / max(len(cells), 1)
    for k, c in enumerate(cells):
        g = cap[cap["cell"] == c].set_index("hidden")
        vals = [float(g.loc[h, "bits_per_param"]) if h in g.index else np.nan for h in hiddens]
        ax.bar(np.arange(len(hiddens)) + (k - (len(cells) - 1) / 2) * width, vals, width,
               color=style.color(c), label=f"{c} (median {np.nanmedian(vals):.2f})")
    ax.set_xticks(range(len(hiddens)), [str(h) for h in hiddens])
    top = np.nanmax(cap["bits_per_param"].to_numpy(float)) if len(cap) else 1.0
    ax.set_ylim(0, max(top, 1e-3) * 1.35)
    ax.set_xlabel("hidden units")
    ax.set_ylabel("bits per parameter")
    ax.set_title(f"Bits per parameter ({cfg.get('scale', '')} scale; Collins et al.: ~{PAPER_BITS_PER_PARAM:g} "
                 f"after long training)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()

    fig2, axes2 = style.figure(1, len(cells), w=3.4, h=3.0)
    for k, c in enumerate(cells):
        ax = axes2[0][k]
        a = cap_all[cap_all["cell"] == c]
        for h in hiddens:
            g = a[a["hidden"] == h].groupby("n_examples")["train_acc"].max()
            ax.plot(g.index, g.values, "o-", label=f"hidden {h}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(a["n_examples"].unique()), [str(n) for n in sorted(a["n_examples"].unique())])
        ax.set_ylim(0.45, 1.02)
        ax.axhline(0.5, color="gray", lw=0.6, ls=":")
        ax.set_xlabel("random-label examples N")
        ax.set_ylabel("training accuracy")
        ax.set_title(c, fontsize=9)
        ax.legend(fontsize=7)
    fig2.suptitle("Memorisation of random labels: training accuracy vs N", fontsize=9)
    fig2.tight_layout()
    return {"capacity": fig, "accuracy_vs_n": fig2}


def _plain_log_ticks(ax):
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())


def run(config=None, **kw):
    return base.run(NAME, config, **kw)
