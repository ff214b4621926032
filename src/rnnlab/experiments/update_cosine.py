"""Local parameter updates against the global one (Mehta VI.B, Fig 9).

A population of inits of each cell is trained on First at the sizes 2x4 and 4x8 with a parameter
snapshot after every epoch. For a model trained N epochs (W_0 the init, W_N its final
parameters, every tensor flattened into one vector: embedding, cell and readout)

    Cosine(t) = <W_N - W_0, W_t - W_{t-1}> / (||W_N - W_0|| ||W_t - W_{t-1}||),   t = 1..N.

Only models reaching ``qualify_acc`` best validation accuracy count (the paper: >= 96%, "the
global update direction only makes sense when the final parameters are a minimum").

Inits are drawn in batches of ``inits`` per size (new seeds, new shards) until every cell has
``min_models`` qualifying models or ``max_inits`` per size are spent: a claim is never decided
from one or two models.

Claims (declarations, qualifying models only, Welch t intervals over models):
  * the gated cell's curve is smoother: total variation mean_t |Cos(t) - Cos(t-1)| per model,
    compared on the log scale: mean log TV(baseline) - mean log TV(gated) > 0, min effect
    log 1.25 (25% less variation);
  * the gated cell's curve rises faster: mean of Cos(1..early_epochs) per model, gated -
    baseline > 0, min effect 0.1.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from ..analysis import stats
from ..analysis.claims import Declaration
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
    "min_models": "inits are drawn in batches of `inits` per size (new seeds) until every cell has >= 5 "
                  "qualifying models or max_inits per size are spent; Welch intervals need >= 2 per cell",
    "smoothness_scale": "total variation is compared on the log scale (a ratio: 'much more smoother'), min effect "
                        "log 1.25; the early rise on the cosine scale, min effect 0.1 (a visible gap in Fig 9)",
    "vanilla": "the first cell of `cells` is the baseline every other cell is compared to",
    "batch_size": "32 (the paper does not give it)",
    "quick": "quick scale: 6 inits per size per batch, at most 12 per size (paper scale 10 and 60), trained "
             "with the paper's full M protocol (8000/2000/3000 sequences, Adam 1e-3, Mehta's stopping rule, up to 150 epochs)",
    "tiny": "tiny scale (tests only): 2 inits per size, 300/200/200 sequences, 3 epochs, qualify_acc 0",
}


def default_config(scale: str) -> dict:
    cfg = {"seed": 0, "cells": ["rnn-tanh", "gru"], "task": "first", "sizes": [[2, 4], [4, 8]], "inits": 10,
           "init_scheme": "torch", "protocol": "mehta", "max_epochs": 150, "lr": 1e-3,
           "data_sizes": {"train": 8000, "val": 2000, "test": 3000}, "qualify_acc": 0.96,
           "early_epochs": 3, "min_models": 5, "max_inits": 60}
    if scale == "quick":
        cfg.update(inits=6, max_inits=12)
    elif scale == "tiny":
        cfg.update(inits=2, max_epochs=3, lr=0.01, qualify_acc=0.0,
                   data_sizes={"train": 300, "val": 200, "test": 200}, max_inits=2)
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
    for k in ("inits", "max_epochs", "early_epochs", "min_models", "max_inits"):
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


def _batch_shard(cfg: dict, cell: str, batch: int) -> dict:
    """Batch `batch` of a cell: inits batch*inits .. (batch+1)*inits - 1 of every size (batch 0 is the
    shard of a plain run, unchanged)."""
    sizes, seeds = [], []
    for e, h in cfg["sizes"]:
        for i in range(batch * cfg["inits"], (batch + 1) * cfg["inits"]):
            sizes.append([e, h])
            seeds.append(_seed(cfg["seed"], i, e, h))
    return {"task": cfg["task"], "task_seed": cfg["seed"], "cell": cell, "init": cfg["init_scheme"],
            "sizes": sizes, "seeds": seeds, "protocol": cfg["protocol"], "max_epochs": cfg["max_epochs"],
            "lr": cfg["lr"], "data_sizes": dict(cfg["data_sizes"])}


def execute(ctx) -> dict[str, pd.DataFrame]:
    cfg = ctx.config
    n_batches = max(1, -(-int(cfg["max_inits"]) // int(cfg["inits"])))
    summ, coss, todo = [], [], list(cfg["cells"])
    for b in range(n_batches):
        outs = ctx.map(cosine_shard, [_batch_shard(cfg, c, b) for c in todo], desc=f"update-cosine batch {b + 1}")
        for c, o in zip(todo, outs):
            shift = b * len(o["summary"])
            summ.append(o["summary"].assign(model=o["summary"].model + shift, batch=b))
            coss.append(o["cosine"].assign(model=o["cosine"].model + shift))
        summary = pd.concat(summ, ignore_index=True)
        q = summary[summary.best_val_acc >= cfg["qualify_acc"]].groupby("cell").size()
        todo = [c for c in cfg["cells"] if q.get(c, 0) < cfg["min_models"]]
        if not todo:
            break
    summary["qualified"] = summary.best_val_acc >= cfg["qualify_acc"]
    cos = pd.concat(coss, ignore_index=True)
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


SMOOTHER = Declaration(
    "smoother-{gated}-vs-{vanilla}",
    "The {gated} Cosine curve is smoother than the {vanilla} one (paper: 'the curve in the case of GRU is much "
    "more smoother').", "mean log total variation of Cos(t): {vanilla} - {gated} (qualifying models)",
    0.0, ">", float(np.log(1.25)), "normal", planning={"sd": 0.6}, units="qualifying models per cell",
    paper="First is that the curve in the case of GRU is much more smoother.", figure="cosine")
RISES_FASTER = Declaration(
    "rises-faster-{gated}-vs-{vanilla}",
    "The {gated} Cosine curve rises faster than the {vanilla} one (paper: 'in the GRU, initially the curve is "
    "almost always very steeply rising').", "mean of Cos(1..{early}): {gated} - {vanilla} (qualifying models)",
    0.0, ">", 0.1, "normal", planning={"sd": 0.3}, units="qualifying models per cell",
    paper="The second is that in the GRU, initially the curve is almost always very steeply rising.",
    figure="cosine")
DECLARATIONS = [SMOOTHER, RISES_FASTER]


def claims(tables: dict, config: dict) -> list:
    cos = tables["cosine"]
    cos = cos[cos.qualified.astype(bool)]
    cells = cells_list(config["cells"])
    vanilla = cells[0]
    st_ = curve_stats(cos, int(config["early_epochs"]))
    st_["log_tv"] = np.log(st_.total_variation.where(st_.total_variation > 0))
    q = tables.get("qualifying")
    trained = q.groupby("cell").n_trained.sum() if q is not None else cos.groupby("cell").model.nunique()
    out = []
    for gated in cells[1:]:
        for decl, col, a, b in ((SMOOTHER, "log_tv", vanilla, gated), (RISES_FASTER, "early_mean", gated, vanilla)):
            x = {c: st_[st_.cell == c][col].dropna().to_numpy(float) for c in (vanilla, gated)}
            est = stats.mean_difference(x[a], x[b], decl.level(config))
            det = {"qualifying_models": {c: len(x[c]) for c in x}, "qualify_acc": float(config["qualify_acc"]),
                   "trained_models": {c: int(trained.get(c, 0)) for c in x},
                   **{f"mean_{c}": float(x[c].mean()) if len(x[c]) else None for c in x}}
            # units are qualifying models; the config key that buys them is max_inits (per size), at the
            # run's own rate of qualifying models of the scarcer cell
            per_size = int(trained.get(vanilla, 0)) / max(len(config["sizes"]), 1)
            out.append(decl.decide(est, dict(gated=gated, vanilla=vanilla, early=config["early_epochs"]), det,
                                   scale=("max_inits", per_size) if est.n else None))
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
