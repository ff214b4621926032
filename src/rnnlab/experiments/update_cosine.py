"""Local parameter updates against the global one (Mehta VI.B, Fig 9).

A population of inits of each cell is trained on First at the sizes 2x4 and 4x8 with a parameter
snapshot after every epoch. For a model trained N epochs (W_0 the init, W_N its final
parameters, every tensor flattened into one vector: embedding, cell and readout)

    Cosine(t) = <W_N - W_0, W_t - W_{t-1}> / (||W_N - W_0|| ||W_t - W_{t-1}||),   t = 1..N.

Only models reaching ``qualify_acc`` best validation accuracy count (the paper: >= 96%, "the
global update direction only makes sense when the final parameters are a minimum").

Claims (computed from the run, qualifying models only):
  * the gated cell's curve is smoother: mean total variation mean_t |Cos(t) - Cos(t-1)| is lower
    for the gated cell than for the baseline (difference baseline - gated, bootstrap over
    models, interval > 0);
  * the gated cell's curve rises faster: the mean of Cos(1..early_epochs) is higher for the
    gated cell (difference gated - baseline, bootstrap over models, interval > 0).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from ..analysis.claims import Claim, bootstrap, threshold_claim
from ..cells.init import check_scheme
from ..engine.model import check_size
from ..errors import ConfigError
from ..plots import style
from . import base
from .common import cells_list, check_classify_task, train_population

NAME = "update-cosine"
PAPER = "mehta"
SOURCE = "Mehta, section VI.B, Fig 9"
QUESTION = ("During training, how well does each epoch's parameter update line up with the overall "
            "displacement from init to solution, for vanilla RNN vs GRU?")
ORDER = 6
VERSION = 1
CHOICES = {
    "inits": "the paper plots one model per cell and size; we train `inits` inits per size and keep every "
             "model reaching `qualify_acc`",
    "qualify_acc": "0.96 best validation accuracy (the paper's threshold)",
    "W_N": "the parameters after the model's last epoch (early stopping ends a model's trajectory; the "
           "curve runs over the epochs it actually trained)",
    "vector": "all parameters (embedding, cell, readout) flattened into one vector, at the model's own size",
    "smoothness": "total variation of a curve = mean over t >= 2 of |Cos(t) - Cos(t-1)|",
    "rise": "mean of Cos(1..early_epochs), early_epochs = 3",
    "min_models": "a claim needs >= 2 qualifying models of each compared cell, else it is inconclusive",
    "vanilla": "the first cell of `cells` is the baseline every other cell is compared to",
    "batch_size": "32 (the paper does not give it)",
    "quick": "quick scale: 3 inits per size, 2000 train / 500 val sequences (no test split), at most 10 epochs "
             "with lr 0.01 (paper: 8000/2000/3000, lr 1e-3, up to 150 epochs); few RNNs qualify",
    "tiny": "tiny scale (tests only): 2 inits per size, 300/200/200 sequences, 3 epochs, qualify_acc 0",
}


def default_config(scale: str) -> dict:
    cfg = {"seed": 0, "cells": ["rnn-tanh", "gru"], "task": "first", "sizes": [[2, 4], [4, 8]], "inits": 10,
           "init_scheme": "torch", "protocol": "mehta", "max_epochs": 150, "lr": 1e-3,
           "data_sizes": {"train": 8000, "val": 2000, "test": 3000}, "qualify_acc": 0.96,
           "early_epochs": 3, "n_boot": 2000}
    if scale == "quick":
        cfg.update(inits=3, max_epochs=10, lr=0.01, data_sizes={"train": 2000, "val": 500})
    elif scale == "tiny":
        cfg.update(inits=2, max_epochs=3, lr=0.01, qualify_acc=0.0,
                   data_sizes={"train": 300, "val": 200, "test": 200}, n_boot=200)
    return cfg


def validate(cfg: dict) -> None:
    check_classify_task("task", cfg["task"])
    if not cfg["sizes"]:
        raise ConfigError("sizes: at least one [input, hidden] is needed")
    sizes = []
    for s in cfg["sizes"]:
        if not isinstance(s, (list, tuple)) or len(s) != 2:
            raise ConfigError(f"sizes: each size is [input, hidden], got {s!r}")
        sizes.append([check_size("sizes", s[0]), check_size("sizes", s[1])])
    cfg["sizes"] = sizes
    for k in ("inits", "max_epochs", "early_epochs", "n_boot"):
        check_size(k, cfg[k])
    if not (0 <= cfg["qualify_acc"] <= 1):
        raise ConfigError(f"qualify_acc: must be in [0, 1], got {cfg['qualify_acc']!r}")
    if not cfg["lr"] > 0:
        raise ConfigError(f"lr: must be > 0, got {cfg['lr']!r}")
    check_scheme(cfg["init_scheme"])
    for k, v in cfg["data_sizes"].items():
        if k not in ("train", "val", "test"):
            raise ConfigError(f"data_sizes: unknown split {k!r}; known: train, val, test")
        check_size(f"data_sizes[{k!r}]", v)
    for k in ("train", "val"):
        if k not in cfg["data_sizes"]:
            raise ConfigError(f"data_sizes: a {k!r} split is needed")


# ----------------------------------------------------------------------------- shards


def _seed(seed: int, i: int, e: int, h: int) -> int:
    ss = np.random.SeedSequence([int(seed), 6, int(i), int(e), int(h)])
    return int(ss.generate_state(1)[0] & 0x7FFFFFFF)


def flat_snapshots(snapshots: list) -> np.ndarray:
    """[epochs + 1, M, P]: every model's padded parameters as one vector per snapshot (padded
    entries are zero and never move, so dot products and norms equal the unpadded ones)."""
    import jax
    return np.stack([np.concatenate([np.asarray(x, np.float64).reshape(x.shape[0], -1)
                                     for x in jax.tree_util.tree_leaves(s)], axis=1) for s in snapshots])


def cosines(traj: np.ndarray) -> np.ndarray:
    """Cos(t), t = 1..N, of one trajectory [N + 1, P] (W_0 .. W_N)."""
    glob = traj[-1] - traj[0]
    loc = np.diff(traj, axis=0)
    den = np.linalg.norm(glob) * np.linalg.norm(loc, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, loc @ glob / np.where(den > 0, den, 1.0), np.nan)


def cosine_shard(shard: dict) -> dict[str, pd.DataFrame]:
    """Train one cell's population with per-epoch snapshots; Cos(t) of every model."""
    res, _ = train_population({**shard, "snapshots": True})
    snaps = flat_snapshots(res.snapshots)
    s = res.summary
    rows = []
    for i in range(len(s)):
        n = int(s.epochs.iloc[i])
        if n < 1:
            continue
        for t, c in enumerate(cosines(snaps[:n + 1, i]), start=1):
            rows.append((i, t, c))
    cos = pd.DataFrame(rows, columns=["model", "epoch", "cosine"])
    cos = cos.merge(s[["model", "seed", "input", "hidden"]], on="model").assign(cell=shard["cell"])
    return {"summary": s.assign(cell=shard["cell"]), "cosine": cos}


def execute(ctx) -> dict[str, pd.DataFrame]:
    cfg = ctx.config
    sizes, seeds = [], []
    for e, h in cfg["sizes"]:
        for i in range(cfg["inits"]):
            sizes.append([e, h])
            seeds.append(_seed(cfg["seed"], i, e, h))
    shards = [{"task": cfg["task"], "task_seed": cfg["seed"], "cell": cell, "init": cfg["init_scheme"],
               "sizes": sizes, "seeds": seeds, "protocol": cfg["protocol"], "max_epochs": cfg["max_epochs"],
               "lr": cfg["lr"], "data_sizes": dict(cfg["data_sizes"])} for cell in cfg["cells"]]
    outs = ctx.map(cosine_shard, shards, desc="update-cosine")
    summary = pd.concat([o["summary"] for o in outs], ignore_index=True)
    summary["qualified"] = summary.best_val_acc >= cfg["qualify_acc"]
    cos = pd.concat([o["cosine"] for o in outs], ignore_index=True)
    cos = cos.merge(summary[["cell", "model", "qualified"]], on=["cell", "model"])
    cos = cos[["cell", "input", "hidden", "model", "seed", "epoch", "cosine", "qualified"]]
    q = summary.groupby(["cell", "input", "hidden"], as_index=False, sort=False).agg(
        n_trained=("model", "size"), n_qualified=("qualified", "sum"), best_val_acc=("best_val_acc", "max"))
    q.insert(1, "size", [f"{e}x{h}" for e, h in zip(q.input, q.hidden)])
    models = curve_stats(cos, cfg["early_epochs"]).merge(
        summary[["cell", "model", "seed", "best_val_acc", "epochs", "status", "qualified"]], on=["cell", "model"])
    return {"cosine": cos, "qualifying": q, "models": models}


# ----------------------------------------------------------------------------- statistics


def curve_stats(cos: pd.DataFrame, early: int) -> pd.DataFrame:
    """Per model: total variation (mean |Cos(t) - Cos(t-1)|) and the mean of Cos(1..early)."""
    rows = []
    for (cell, model), g in cos.groupby(["cell", "model"], sort=False):
        c = g.sort_values("epoch").cosine.to_numpy(float)
        d = np.abs(np.diff(c))
        d = d[np.isfinite(d)]
        e = c[:early]
        e = e[np.isfinite(e)]
        rows.append({"cell": cell, "model": model, "input": int(g.input.iloc[0]), "hidden": int(g.hidden.iloc[0]),
                     "n_epochs": len(c), "total_variation": float(d.mean()) if len(d) else np.nan,
                     "early_mean": float(e.mean()) if len(e) else np.nan})
    return pd.DataFrame(rows, columns=["cell", "model", "input", "hidden", "n_epochs", "total_variation",
                                       "early_mean"])


# ----------------------------------------------------------------------------- claims


def claims(tables: dict, config: dict) -> list:
    cos = tables["cosine"]
    cos = cos[cos.qualified.astype(bool)]
    cells = cells_list(config["cells"])
    vanilla = cells[0]
    stats = curve_stats(cos, int(config["early_epochs"]))
    nb, seed = int(config["n_boot"]), int(config["seed"])
    qual = {c: int((stats.cell == c).sum()) for c in cells}
    out = []
    for gated in cells[1:]:
        for cid, col, sign, text, statistic in (
                ("smoother", "total_variation", -1,
                 f"The {gated} Cosine curve is smoother than the {vanilla} one (paper: 'the curve in the case of "
                 f"GRU is much more smoother').",
                 f"mean total variation of Cos(t): {vanilla} - {gated} (qualifying models)"),
                ("rises-faster", "early_mean", 1,
                 f"The {gated} Cosine curve rises faster than the {vanilla} one (paper: 'in the GRU, initially "
                 f"the curve is almost always very steeply rising').",
                 f"mean of Cos(1..{config['early_epochs']}): {gated} - {vanilla} (qualifying models)")):
            g = stats[stats.cell == gated][col].dropna().to_numpy(float)
            v = stats[stats.cell == vanilla][col].dropna().to_numpy(float)
            details = {"qualifying_models": {vanilla: qual[vanilla], gated: qual[gated]},
                       "qualify_acc": float(config["qualify_acc"]),
                       f"mean_{vanilla}": float(v.mean()) if len(v) else None,
                       f"mean_{gated}": float(g.mean()) if len(g) else None,
                       "interval": "bootstrap over qualifying models, each cell resampled on its own"}
            if len(g) < 2 or len(v) < 2:
                details["note"] = (f"needs >= 2 qualifying models of each cell (best val acc >= "
                                   f"{config['qualify_acc']:g}); have {vanilla}: {len(v)}, {gated}: {len(g)}")
                out.append(Claim(f"{cid}-{gated}-vs-{vanilla}", text, statistic, None, None, "inconclusive", details))
                continue
            stat = (lambda a, b: np.mean(b) - np.mean(a)) if sign < 0 else (lambda a, b: np.mean(a) - np.mean(b))
            value, ci = bootstrap(stat, g, v, n_boot=nb, seed=seed)
            out.append(threshold_claim(f"{cid}-{gated}-vs-{vanilla}", text, statistic, value, ci, 0.0, ">",
                                       details=details))
    return out


# ----------------------------------------------------------------------------- figures


def figures(tables: dict, config: dict) -> dict:
    cos = tables["cosine"]
    cells = cells_list(config["cells"])
    sizes = [tuple(s) for s in config["sizes"]]
    fig, axes = style.figure(len(sizes), len(cells), w=3.6, h=2.8, sharey=True)
    for i, (e, h) in enumerate(sizes):
        for j, c in enumerate(cells):
            ax = axes[i][j]
            sel = cos[(cos.cell == c) & (cos.input == e) & (cos.hidden == h)]
            q = sel[sel.qualified.astype(bool)]
            shown = q if len(q) else sel
            col = style.color(c) if len(q) else "#999999"
            curves = []
            for _, g in shown.groupby("model"):
                g = g.sort_values("epoch")
                ax.plot(g.epoch, g.cosine, color=col, lw=0.7, alpha=0.45, marker="o", ms=2)
                curves.append(g.set_index("epoch").cosine)
            if len(curves) >= 2:
                m = pd.concat(curves, axis=1)
                style.curve_band(ax, m.index.to_numpy(), m.to_numpy().T, "median (IQR band)", col)
                ax.legend(fontsize=7, loc="lower right")
            n_q, n_all = q.model.nunique(), sel.model.nunique()
            note = (f"{n_q}/{n_all} models >= {100 * config['qualify_acc']:.0f}%" if len(q)
                    else f"no model >= {100 * config['qualify_acc']:.0f}% (all {n_all} shown, grey)")
            ax.set_title(f"{c} ({e}x{h}): {note}", fontsize=8)
            ax.axhline(0, color="black", lw=0.5)
            ax.set_ylim(-1.05, 1.05)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if i == len(sizes) - 1:
                ax.set_xlabel("epoch t")
            if j == 0:
                ax.set_ylabel("Cosine(t)")
    fig.suptitle("Cosine between each epoch's update W_t - W_(t-1) and the global update W_N - W_0 "
                 f"({config['task']}, {config['scale']} scale)", fontsize=10)
    fig.tight_layout()
    return {"cosine": fig}


def run(config=None, **kw):
    return base.run(NAME, config, **kw)
