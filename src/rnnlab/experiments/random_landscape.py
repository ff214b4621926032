"""Frequency of solutions on the loss surface: accuracy of untrained random models (Mehta VI.A,
Figs 7-8).

For every cell and (input, hidden) size, ``draws`` parameter settings are drawn from the init
scheme (PyTorch's defaults in the paper) and, without any training, classified on the
validation set of First. The accuracies (multiples of 1/n_val) are counted exactly in a
histogram; a sample of raw accuracies feeds the box plot. The fast kernel is
:mod:`rnnlab.analysis.landscape`. A small population of each cell is also *trained* at one size,
to set the random-draw distributions against what training achieves.

Claims (declarations):
  * the random-draw accuracy distributions of the cells are close: the largest two-sample
    Kolmogorov-Smirnov distance between the baseline (first) cell and another cell over the
    sizes is below ``ks_threshold`` (DKW bands of every empirical CDF, simultaneous over the
    sizes: distribution free, no resampling of a maximum);
  * the random-draw gap is small against the trained gap: (mean best val acc of the trained
    cell - baseline) minus |mean random-draw accuracy of the cell - baseline| at the trained size
    is > 0 (Welch interval over trained inits and t intervals of the random means, combined).
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd

from .. import tasks as tasks_mod
from ..analysis import stats
from ..analysis.claims import Declaration
from ..analysis.landscape import Landscape
from ..cells.init import check_scheme
from ..engine.model import check_size
from ..errors import ConfigError
from ..plots import style
from . import base
from . import perturbation as pt
from .common import cells_list, check_classify_task, model_spec

NAME = "random-landscape"
PAPER = "mehta"
SOURCE = "Mehta, section VI.A, Figs 7-8"
QUESTION = ("Without any training, how are validation accuracies distributed over random parameter "
            "settings, and do vanilla RNN and GRU differ?")
ORDER = 5
VERSION = 1
ROUNDS = {"units": "draws", "offset": "draw_offset"}
CHOICES = {
    "draws": "10^6 parameter draws per cell and size (the paper's 'million different parameter settings'), "
             "from the init scheme `init_scheme` (torch = the PyTorch defaults the paper used)",
    "data": "the 2000 validation sequences of First (seed `seed`), the set the paper's inference used",
    "histogram": "accuracies are exact multiples of 1/n_val and are counted exactly (one row per value "
                 "seen); quantiles and means come from the counts; the first `sample` draws are kept raw "
                 "for the box plot",
    "seeding": "draw i of (seed, cell, input, hidden) comes from a NumPy generator seeded by (seed, cell, "
               "input, hidden, i // 64): results do not depend on chunking, sharding or backend",
    "ks_threshold": "the distributions count as close when the KS distance is < 0.1 at every size: at every "
                    "accuracy level the fractions of random draws reaching it differ by < 10 points, a third of "
                    "the 0.3 gap in good-init fractions that capacity-inits asks of training (the paper's point: "
                    "similar solution counts, different trainability); min effect 0.05 for the draws needed",
    "gap_min_effect": "the trained gap must exceed the random one; min effect 5 accuracy points",
    "trained": "the trained gap comes from `trained_inits` inits of each cell at `trained_size`, trained "
               "with the M protocol on First (same validation set); gap = difference of mean best val acc",
    "vanilla": "the first cell of `cells` is the baseline every other cell is compared to",
    "shards": "one shard per trained cell (run first, see trained_population), then one per (cell, size, block of "
              "`block` draws), longest first (blocks of >= 50,000 draws in one pinned worker process per core): a "
              "killed run resumes shard by shard",
    "trained_population": "the trained populations ARE perturbation's base populations (its shards, seeds (seed, 70, i), "
                          "stored under its name): with the same settings - trained_inits = perturbation's "
                          "base_inits (12 at quick, 20 at paper scale), trained_size = its size, the same lr, epochs "
                          "and data sizes - the models are trained once in a reproduction and the second experiment "
                          "reuses them (measured: perturbation's base training was ~1/3 of its quick run)",
    "quick": "quick scale: 65536 draws per cell and size (paper 10^6: the DKW band at 65536 resolves the KS "
             "threshold 0.1 for distances near the paper-scale 0.08), each hidden size in its own kernel as at paper scale "
             "(padding hidden 2 to 4 - one kernel per cell, the same counts - cost 17 s more kernel time than the 4 s "
             "of the extra compilations, measured), 12 trained inits (paper 20) trained with the paper's full M protocol (8000/2000/3000 sequences, Adam 1e-3, Mehta's stopping rule, up to 150 epochs)",
    "tiny": "tiny scale (tests only): 256 draws in blocks of 128, 200 validation sequences, 8 trained inits "
            "x 2 epochs on 300 sequences",
}


#: blocks of at least this many draws run in pinned worker processes (see `execute`)
PINNED_BLOCK = 50_000


def default_config(scale: str) -> dict:
    cfg = {"seed": 0, "cells": ["rnn-tanh", "gru"], "task": "first", "inputs": [2, 4], "hiddens": [2, 4],
           "draws": 1_000_000, "block": 100_000, "chunk": 128, "n_val": 2000, "init_scheme": "torch",
           "dtype": "float32", "pad_hidden": False, "sample": 10_000, "ks_threshold": 0.1,
           "trained_size": [2, 4], "trained_inits": 20, "trained_epochs": 150, "lr": 1e-3,
           "train_size": 8000, "test_size": 3000}
    if scale == "quick":
        cfg.update(draws=65536, block=16384, trained_inits=12)
    elif scale == "tiny":
        cfg.update(draws=256, block=128, chunk=64, sample=128, n_val=200, pad_hidden=True, trained_inits=8,
                   trained_epochs=2, train_size=300, test_size=200)
    return cfg


def validate(cfg: dict) -> None:
    check_classify_task("task", cfg["task"])
    for key in ("inputs", "hiddens"):
        if not cfg[key]:
            raise ConfigError(f"{key}: at least one size is needed")
        cfg[key] = [check_size(key, v) for v in cfg[key]]
    for key in ("draws", "block", "chunk", "n_val", "trained_inits", "trained_epochs", "train_size"):
        check_size(key, cfg[key])
    if cfg["test_size"] != 0:
        check_size("test_size", cfg["test_size"])
    if cfg["sample"] < 0:
        raise ConfigError(f"sample: must be >= 0, got {cfg['sample']!r}")
    if not (0 < cfg["ks_threshold"] <= 1):
        raise ConfigError(f"ks_threshold: must be in (0, 1], got {cfg['ks_threshold']!r}")
    if len(cfg["trained_size"]) != 2:
        raise ConfigError(f"trained_size: expected [input, hidden], got {cfg['trained_size']!r}")
    cfg["trained_size"] = [check_size("trained_size", v) for v in cfg["trained_size"]]
    if cfg["dtype"] not in ("float32", "float64"):
        raise ConfigError(f"dtype: must be float32 or float64, got {cfg['dtype']!r}")
    if not cfg["lr"] > 0:
        raise ConfigError(f"lr: must be > 0, got {cfg['lr']!r}")
    check_scheme(cfg["init_scheme"])


# ----------------------------------------------------------------------------- shards


def landscape_shard(shard: dict) -> dict[str, pd.DataFrame]:
    """Correct counts of draws [start, start+n) of one (cell, size): histogram rows, the raw
    values of draws below `sample`, and the time it took."""
    spec = model_spec(shard["task"], shard["cell"], shard["init"], shard["dtype"])
    data = tasks_mod.splits(shard["task"], shard["seed"], {"val": shard["n_val"]})["val"]
    e, h = shard["input"], shard["hidden"]
    ls = Landscape(spec, e, h, data, shard["seed"], chunk=shard["chunk"], emax=shard["emax"], hmax=shard["hmax"])
    t0 = time.perf_counter()
    ls.chunk_correct(shard["start"])           # compile outside the timing (cached per process)
    t1, c1 = time.perf_counter(), time.process_time()
    correct = ls.correct(shard["start"], shard["n"], progress=shard["n"] >= 50_000,
                         desc=f"random {shard['cell']} {e}x{h}")
    # process CPU time: with the local backend's concurrent shards it includes the shard
    # running beside this one, so models_per_cpu_s is a lower bound there (exact with 1 worker)
    wall, cpu = time.perf_counter() - t1, time.process_time() - c1
    counts = np.bincount(correct, minlength=shard["n_val"] + 1)
    k = np.flatnonzero(counts)
    key = {"cell": shard["cell"], "input": e, "hidden": h}
    hist = pd.DataFrame({**key, "correct": k, "count": counts[k]})
    idx = shard["start"] + np.arange(shard["n"])
    keep = idx < shard["sample"]
    sample = pd.DataFrame({**key, "draw": idx[keep], "correct": correct[keep]})
    timing = pd.DataFrame([{**key, "start": shard["start"], "n": shard["n"], "wall_s": wall, "cpu_s": cpu,
                            "setup_s": t1 - t0, "fast_path": ls.fast, "emax": shard["emax"],
                            "hmax": shard["hmax"], "chunk": shard["chunk"]}])
    return {"histogram": hist, "sample": sample, "timing": timing}


def _cost(shard: dict) -> float:
    """Rough relative cost of a block of draws, to start the longest first."""
    cell = model_spec(shard["task"], shard["cell"], shard["init"], shard["dtype"]).cell_def
    return shard["n"] * shard["hmax"] * cell.state_mult * (cell.gates + 1)


def trained_shards(cfg: dict) -> list[dict]:
    """The trained reference populations: perturbation's base shards with this config's settings."""
    return pt.base_shards(cfg["cells"], seed=cfg["seed"], task=cfg["task"], init=cfg["init_scheme"],
                          size=cfg["trained_size"], lr=cfg["lr"], inits=cfg["trained_inits"],
                          epochs=cfg["trained_epochs"],
                          data_sizes={"train": cfg["train_size"], "val": cfg["n_val"],
                                      **({"test": cfg["test_size"]} if cfg["test_size"] else {})})


def execute(ctx) -> dict[str, pd.DataFrame]:
    cfg = ctx.config
    sizes = [(e, h) for e in cfg["inputs"] for h in cfg["hiddens"]]
    emax = max(cfg["inputs"])
    shards = []
    for cell in cfg["cells"]:
        for e, h in sizes:
            off = cfg.get("draw_offset", 0)
            for start in range(off, off + cfg["draws"], cfg["block"]):
                shards.append({"task": cfg["task"], "seed": cfg["seed"], "n_val": cfg["n_val"],
                               "cell": cell, "init": cfg["init_scheme"], "dtype": cfg["dtype"], "input": e,
                               "hidden": h, "emax": emax, "hmax": max(cfg["hiddens"]) if cfg["pad_hidden"] else h,
                               "start": start, "n": min(cfg["block"], off + cfg["draws"] - start),
                               "chunk": cfg["chunk"], "sample": min(cfg["sample"], cfg["draws"])})
    # the trained reference populations: perturbation's base shards, through its namespace in the
    # store (see CHOICES["trained_population"])
    touts = ctx.map_as(pt, pt.base_shard, trained_shards(cfg), desc=f"{NAME} (trained populations)")
    # longest first, so that no core idles at the end; big blocks of draws run in one pinned
    # worker process per core (backends.local): 1.3-1.4x faster on 2 cores than threads sharing
    # the cores; small ones here (no start-up cost). The tables keep the shards' own order.
    order = sorted(range(len(shards)), key=lambda i: -_cost(shards[i]))
    done = ctx.map(landscape_shard, [shards[i] for i in order], desc="random-landscape shards",
                   pinned=cfg["block"] >= PINNED_BLOCK)
    draws: list = [None] * len(shards)
    for j, i in enumerate(order):
        draws[i] = done[j]
    hist = pd.concat([o["histogram"] for o in draws], ignore_index=True)
    hist = hist.groupby(["cell", "input", "hidden", "correct"], as_index=False, sort=True)["count"].sum()
    hist["accuracy"] = hist["correct"] / cfg["n_val"]
    sample = pd.concat([o["sample"] for o in draws], ignore_index=True)
    sample["accuracy"] = sample["correct"] / cfg["n_val"]
    timing = pd.concat([o["timing"] for o in draws], ignore_index=True)
    trained = pd.concat([o["summary"] for o in touts], ignore_index=True)
    return {"histogram": hist, "summary": summarize(hist), "sample": sample,
            "trained": trained[["cell", "input", "hidden", "seed", "best_val_acc", "best_epoch", "test_acc",
                                "epochs", "status"]],
            "throughput": throughput(timing)}


# ----------------------------------------------------------------------------- statistics


def _quantile(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    cum = np.cumsum(counts)
    return float(values[np.searchsorted(cum, q * cum[-1], side="left").clip(0, len(values) - 1)])


def summarize(hist: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (cell, e, h), g in hist.groupby(["cell", "input", "hidden"], sort=False):
        g = g.sort_values("accuracy")
        v, c = g.accuracy.to_numpy(float), g["count"].to_numpy(float)
        n = c.sum()
        mean = float((v * c).sum() / n)
        row = {"cell": cell, "input": e, "hidden": h, "n_draws": int(n), "mean": mean,
               "std": float(np.sqrt(((v - mean) ** 2 * c).sum() / n)), "min": float(v[0]), "max": float(v[-1])}
        for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99):
            row[f"q{int(round(q * 100)):02d}"] = _quantile(v, c, q)
        for a in (0.6, 0.7, 0.8, 0.9):
            row[f"frac_ge_{int(a * 100)}"] = float(c[v >= a - 1e-12].sum() / n)
        rows.append(row)
    return pd.DataFrame(rows)


def throughput(timing: pd.DataFrame) -> pd.DataFrame:
    g = timing.groupby(["cell", "input", "hidden"], as_index=False, sort=False).agg(
        n=("n", "sum"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"), setup_s=("setup_s", "max"),
        fast_path=("fast_path", "all"), hmax=("hmax", "max"), emax=("emax", "max"))
    g["models_per_s"] = g["n"] / g["wall_s"].clip(lower=1e-9)
    g["models_per_cpu_s"] = g["n"] / g["cpu_s"].clip(lower=1e-9)
    return g


def _counts(hist: pd.DataFrame, cell: str, e: int, h: int, n_val: int) -> np.ndarray:
    g = hist[(hist.cell == cell) & (hist.input == e) & (hist.hidden == h)]
    out = np.zeros(n_val + 1)
    out[g.correct.to_numpy(int)] = g["count"].to_numpy(float)
    return out


def merge_rounds(parts: list[dict], cfg: dict) -> dict:
    """Rounds of more draws: histograms and raw samples add up, the trained populations are round 1's."""
    hist = pd.concat([p["histogram"] for p in parts], ignore_index=True)
    hist = hist.groupby(["cell", "input", "hidden", "correct"], as_index=False, sort=True)["count"].sum()
    hist["accuracy"] = hist["correct"] / cfg["n_val"]
    return {"histogram": hist, "summary": summarize(hist),
            "sample": pd.concat([p["sample"] for p in parts], ignore_index=True),
            "trained": parts[0]["trained"], "throughput": pd.concat([p["throughput"] for p in parts],
                                                                    ignore_index=True)}


CLOSE = Declaration(
    "random-distributions-close-{gated}-vs-{vanilla}",
    "Without training, the accuracy distributions of random {vanilla} and {gated} parameter settings are close "
    "(paper: the plots of RNN and GRU are quite similar; equal numbers of solutions).",
    "max over sizes of the KS distance between the {vanilla} and {gated} random-draw accuracy distributions",
    0.1, "<", 0.05, "dkw", effect=False, planning={"m": 4}, units="draws per cell and size",
    paper="The plots of RNN and GRU are quite similar and suggests that the frequency of a point giving particular "
          "accuracy on the loss surface is same for RNN and GRU.", figure="frequency_overlay")
GAP_SMALL = Declaration(
    "random-gap-small-vs-trained-{gated}-vs-{vanilla}",
    "The difference between {gated} and {vanilla} in random-draw accuracy is small against the difference that "
    "training makes (paper: equal numbers of solutions, but GRU trains better).",
    "(mean trained best val acc {gated} - {vanilla}) - |mean random-draw acc {gated} - {vanilla}| at {size}",
    0.0, ">", 0.05, "normal", planning={"sd": 0.25}, units="trained inits per cell",
    paper="the reason for GRU performing much better than RNN is the high trainability which can just take the "
          "model from more number of positions on the error surface to the good positions", figure="boxplot")
DECLARATIONS = [CLOSE, GAP_SMALL]


def claims(tables: dict, config: dict) -> list:
    hist, trained = tables["histogram"], tables["trained"]
    cells = cells_list(config["cells"])
    vanilla = cells[0]
    n_val = int(config["n_val"])
    sizes = [(e, h) for e in config["inputs"] for h in config["hiddens"]]
    te, th = config["trained_size"]
    acc = np.arange(n_val + 1) / n_val
    close = replace(CLOSE, threshold=float(config["ks_threshold"]), planning={"m": len(sizes)})
    out = []
    for gated in cells[1:]:
        lv = stats.bonferroni(close.level(config), len(sizes))
        ests, per_size = [], {}
        for e, h in sizes:
            a, b = _counts(hist, vanilla, e, h, n_val), _counts(hist, gated, e, h, n_val)
            ests.append(stats.ks_counts(a, b, lv))
            per_size[f"{e}x{h}"] = {"ks": ests[-1].value, "draws": ests[-1].n,
                                    f"mean_{vanilla}": float((acc * a).sum() / a.sum()) if a.sum() else None,
                                    f"mean_{gated}": float((acc * b).sum() / b.sum()) if b.sum() else None}
        out.append(close.decide(stats.extreme(ests, "max", close.level(config), "sizes"),
                                dict(gated=gated, vanilla=vanilla), {"per_size": per_size},
                                scale=("draws", config["draws"])))
        lv = stats.bonferroni(GAP_SMALL.level(config), 2)
        tv, tg = (trained[trained.cell == c].best_val_acc.dropna().to_numpy(float) for c in (vanilla, gated))
        t_gap = stats.mean_difference(tg, tv, lv)
        ra, rb = _counts(hist, gated, te, th, n_val), _counts(hist, vanilla, te, th, n_val)
        ma, mb = stats.mean_from_counts(acc, ra, bonferroni_half(lv)), stats.mean_from_counts(acc, rb, bonferroni_half(lv))
        r_gap = stats.absolute(stats.combine([(1, ma), (-1, mb)], lv, "random gap"))
        est = stats.combine([(1, t_gap), (-1, r_gap)], GAP_SMALL.level(config), "trained gap - |random gap|")
        out.append(GAP_SMALL.decide(est, dict(gated=gated, vanilla=vanilla, size=f"{te}x{th}"),
                                    {"trained_gap": t_gap.value, "trained_gap_interval": t_gap.interval,
                                     "random_gap": r_gap.value, "random_gap_interval": r_gap.interval,
                                     "trained_inits": int(min(len(tg), len(tv)))},
                                    scale=("trained_inits", config["trained_inits"])))
    return out


def bonferroni_half(level: float) -> float:
    """Each of the two random means gets half of the random gap's error budget."""
    return stats.bonferroni(level, 2)


# ----------------------------------------------------------------------------- figures


def _label(cell: str, e: int, h: int) -> str:
    return f"{cell} ({e}x{h})"


def figures(tables: dict, config: dict) -> dict:
    hist, sample = tables["histogram"], tables["sample"]
    cells = cells_list(config["cells"])
    sizes = [(e, h) for e in config["inputs"] for h in config["hiddens"]]
    n_val = int(config["n_val"])
    width = max(1, n_val // 200)               # 0.5% bins for the frequency plots
    figs = {}

    def binned(c, e, h):
        cnt = _counts(hist, c, e, h, n_val)
        nb = -(-(n_val + 1) // width)
        b = np.zeros(nb * width)
        b[:n_val + 1] = cnt
        return 100 * (np.arange(nb) * width + (width - 1) / 2) / n_val, b.reshape(nb, width).sum(1)

    seen = hist[hist["count"] > 0].accuracy
    lo = max(0.0, 100 * float(seen.min()) - 3) if len(seen) else 0.0
    hi = min(100.0, 100 * float(seen.max()) + 3) if len(seen) else 100.0
    fig, axes = style.figure(len(cells), len(sizes), w=3.0, h=2.5, sharex=True)
    for i, c in enumerate(cells):
        for j, (e, h) in enumerate(sizes):
            ax = axes[i][j]
            x, y = binned(c, e, h)
            ax.fill_between(x, y, step="mid", color=style.color(c), alpha=0.35, linewidth=0)
            ax.plot(x, y, drawstyle="steps-mid", color=style.color(c), lw=1)
            ax.set_title(_label(c, e, h), fontsize=9)
            ax.set_yscale("symlog", linthresh=10)
            ax.set_xlim(lo, hi)
            if i == len(cells) - 1:
                ax.set_xlabel("validation accuracy (%)")
            if j == 0:
                ax.set_ylabel("count (symlog)")
    fig.suptitle(f"Accuracy of {int(config['draws']):,} untrained random parameter settings per model "
                 f"({config['task']}, init {config['init_scheme']}, bins of {100 * width / n_val:g}%)", fontsize=10)
    fig.tight_layout()
    figs["frequency"] = fig

    fig, axes = style.figure(1, len(sizes), w=3.2, h=2.8, sharey=True)
    for j, (e, h) in enumerate(sizes):
        ax = axes[0][j]
        for c in cells:
            x, y = binned(c, e, h)
            if y.sum() > 0:
                ax.plot(x, y / y.sum(), drawstyle="steps-mid", color=style.color(c), lw=1.2, label=c)
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_title(f"input {e} x hidden {h}", fontsize=9)
        ax.set_xlabel("validation accuracy (%)")
        if j == 0:
            ax.set_ylabel("fraction of draws")
            ax.legend(fontsize=8)
    fig.suptitle("Random-draw accuracy distributions, cells overlaid (log scale)", fontsize=10)
    fig.tight_layout()
    figs["frequency_overlay"] = fig

    fig, axes = style.figure(1, 1, w=max(5.0, 0.75 * len(cells) * len(sizes) + 1.5), h=3.6)
    ax = axes[0][0]
    data, labels, colors = [], [], []
    for e, h in sizes:
        for c in cells:
            d = 100 * sample[(sample.cell == c) & (sample.input == e) & (sample.hidden == h)].accuracy.to_numpy(float)
            data.append(d if len(d) else [np.nan])
            labels.append(_label(c, e, h))
            colors.append(style.color(c))
    bp = ax.boxplot(data, widths=0.6, patch_artist=True, flierprops={"markersize": 2, "alpha": 0.4},
                    medianprops={"color": "black"})
    for patch, col in zip(bp["boxes"], colors):
        patch.set_facecolor(col)
        patch.set_alpha(0.5)
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("validation accuracy (%)")
    n_s = int(sample.groupby(["cell", "input", "hidden"]).size().max()) if len(sample) else 0
    ax.set_title(f"Untrained random parameter settings: box plots over {n_s:,} draws per model", fontsize=10)
    fig.tight_layout()
    figs["boxplot"] = fig
    return figs


def run(config=None, **kw):
    return base.run(NAME, config, **kw)
