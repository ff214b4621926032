"""Geometry of the words in a trained 2-input, 2-hidden model on Count (Mehta IV.A, Fig 1).

For each cell a population of inits is trained on Count; for every model and word we record
the embedding x, the input projection W_ih x (the block that writes the state: the candidate
block of a gated cell, and every gate's block separately), and W_oh W_ih x (the readout of that
projection). The best model of each cell is drawn like the paper's Fig 1.

Claims (declarations, over the models that reach ``min_val_acc``; exact binomial intervals):
  * positive and negative words are linearly separable in W_ih x and in W_oh W_ih x
    (exact hard-margin test by linear programming): the fraction of qualifying models where both
    hold is above ``separable_frac``;
  * stop words are NOT mapped to the null space of W_ih (the paper's negative finding): the
    fraction of qualifying models whose ratio median ||W_ih x_stop|| / median ||W_ih x_sentiment||
    exceeds ``null_ratio`` is above one half (i.e. the median model's ratio exceeds it; the median
    ratio with its order-statistic interval is in the details).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from .. import cells as cells_mod
from .. import tasks as tasks_mod
from ..analysis import stats
from ..analysis.claims import Declaration
from ..cells.init import check_scheme
from ..engine.model import check_size
from ..engine.protocols import get as get_protocol
from ..errors import ConfigError
from ..plots import style
from . import base
from .common import cells_list, check_classify_task, params_from_frame, train_shard

NAME = "word-geometry"
PAPER = "mehta"
SOURCE = "Mehta, section IV.A, Fig 1"
QUESTION = ("Where do a trained 2x2 model's input and readout matrices send stop, positive and negative "
            "words: are stop words in the null space of W_ih, are positive and negative words separable?")
ORDER = 1
VERSION = 1
ROUNDS = {"units": "inits", "offset": "init_offset"}
CHOICES = {
    "inits": "several inits per cell trained in one population; the best (highest val acc) model is the "
             "one drawn; the claims use every model reaching min_val_acc (paper: one model per cell)",
    "min_val_acc": "0.85 (the paper's RNN reached 87%, its GRU 100%)",
    "w_ih_block": "for a gated cell, 'W_ih x' is the candidate block (GRU n, LSTM g, gru-s h: the one "
                  "that writes the state); every gate's block is recorded too; the null-space ratio uses "
                  "the whole stacked W_ih",
    "separability": "exact: a linear program looks for (w, b) with y (w.x + b) >= 1 for the 4 "
                    "sentiment words; separable_frac 0.5 (Wilson interval of the fraction of models)",
    "null_ratio": "stop words are 'in the null space' when ||W_ih x_stop|| < 0.1 x ||W_ih x_sentiment||: a "
                  "sentence has 10 words, so below 1/10 all the stop words of a sentence together move the "
                  "state's input less than one sentiment word does - for the decision they are in the null "
                  "space. A model counts as 'not null' above it; the claim asks it of most models",
    "majority": "both claims hold when the exact 95% interval of the fraction of qualifying models lies above "
                "1/2 and fail when it lies below; min effect 0.3 (a fraction of 0.8 or 0.2) for the sample size",
    "batch_size": "32 (the paper does not give it)",
    "n_inits": "32 inits at both scales (the paper scale had 10): stop-not-null-rnn-tanh is a fraction over the "
             "qualifying models and 10 (9 qualifying: 0.556 [0.212, 0.863]) or 8 inits left it undecided; 32 decide it "
             "(0.7 [0.506, 0.853] on seed 0, holds on seed 1 too), at ~28 s on one core",
    "quick": "quick scale = paper scale: 32 inits trained with the paper's full M protocol (8000/2000/3000 sequences, Adam 1e-3, Mehta's stopping rule, up to 150 epochs)",
    "tiny": "tiny scale (tests only): input 4 x hidden 4 (figures show the first 2 coordinates), 8 inits, "
            "300/200/200 sequences, 2 epochs, min_val_acc 0",
}

STOP, POS, NEG = tasks_mod.STOP, tasks_mod.POS, tasks_mod.NEG
KIND_COLORS = {"stop": "#7f7f7f", "pos": "#2ca02c", "neg": "#d62728"}

#: gate block names (in the stacked order of W_ih) and the block that writes the state
GATE_NAMES = {"gru": ("r", "z", "n"), "gru-s": ("z", "r", "h"), "lstm": ("i", "f", "g", "o")}
CANDIDATE = {"gru": "n", "gru-s": "h", "lstm": "g"}


def gate_names(cell: str) -> tuple[str, ...]:
    g = cells_mod.get(cell).gates
    if cell in GATE_NAMES and len(GATE_NAMES[cell]) == g:
        return GATE_NAMES[cell]
    return tuple(f"g{i + 1}" for i in range(g))


def candidate_block(cell: str) -> int:
    names = gate_names(cell)
    if len(names) == 1:
        return 0
    return names.index(CANDIDATE[cell]) if CANDIDATE.get(cell) in names else len(names) - 1


def word_kind(w: int) -> str:
    return "stop" if w in STOP else "pos" if w in POS else "neg"


def default_config(scale: str) -> dict:
    cfg = {"seed": 0, "cells": ["rnn-tanh", "gru"], "task": "count", "input": 2, "hidden": 2,
           "inits": 32, "init_scheme": "torch", "protocol": "mehta", "max_epochs": 150,
           "data_sizes": {"train": 8000, "val": 2000, "test": 3000}, "min_val_acc": 0.85,
           "separable_frac": 0.5, "null_ratio": 0.1}
    if scale == "tiny":
        # tests only: 4x4 and 8 models, the shapes of the other tiny runs, so the compiled epoch is shared
        cfg.update(input=4, hidden=4, inits=8, max_epochs=2, data_sizes={"train": 300, "val": 200, "test": 200},
                   min_val_acc=0.0)
    return cfg


def validate_single(cfg: dict) -> None:
    """Checks shared with state-trajectories (one size, one task, several inits)."""
    check_classify_task("task", cfg["task"])
    for k in ("input", "hidden", "inits", "max_epochs"):
        check_size(k, cfg[k])
    check_scheme(cfg["init_scheme"])
    get_protocol(cfg["protocol"])
    for k, v in cfg["data_sizes"].items():
        if k not in ("train", "val", "test"):
            raise ConfigError(f"data_sizes: unknown split {k!r}; known: train, val, test")
        check_size(f"data_sizes[{k!r}]", v)
    for k in ("train", "val"):
        if k not in cfg["data_sizes"]:
            raise ConfigError(f"data_sizes: a {k!r} split is needed")
    if not (0 <= cfg["min_val_acc"] <= 1):
        raise ConfigError(f"min_val_acc: must be in [0, 1], got {cfg['min_val_acc']!r}")


def validate(cfg: dict) -> None:
    validate_single(cfg)
    if not (0 <= cfg["separable_frac"] <= 1):
        raise ConfigError(f"separable_frac: must be in [0, 1], got {cfg['separable_frac']!r}")
    if cfg["null_ratio"] < 0:
        raise ConfigError(f"null_ratio: must be >= 0, got {cfg['null_ratio']!r}")


def population_shards(cfg: dict, tag: int) -> list[dict]:
    """One shard per cell: `inits` models of the single (input, hidden) size."""
    tid = tasks_mod.get(cfg["task"]).task_id
    seeds = [int(np.random.SeedSequence([int(cfg["seed"]), tag, tid, i]).generate_state(1)[0] & 0x7FFFFFFF)
             for i in range(cfg.get("init_offset", 0), cfg.get("init_offset", 0) + cfg["inits"])]
    return [{"task": cfg["task"], "task_seed": cfg["seed"], "cell": cell, "init": cfg["init_scheme"],
             "sizes": [[cfg["input"], cfg["hidden"]]] * cfg["inits"], "seeds": seeds,
             "protocol": cfg["protocol"], "max_epochs": cfg["max_epochs"],
             "data_sizes": dict(cfg["data_sizes"])} for cell in cfg["cells"]]


def models_table(summary: pd.DataFrame, min_acc: float) -> pd.DataFrame:
    """One row per model with `qualifies` (val acc >= min_acc) and `selected` (best of its cell)."""
    m = summary[["cell", "model", "seed", "input", "hidden", "best_val_acc", "test_acc", "best_epoch",
                 "epochs", "status"]].copy().reset_index(drop=True)
    m["qualifies"] = m.best_val_acc >= min_acc
    m["selected"] = False
    for cell, g in m.groupby("cell", sort=False):
        m.loc[g.best_val_acc.idxmax(), "selected"] = True
    return m


# ----------------------------------------------------------------------------- measure


def word_rows(cell: str, model: int, p: dict) -> pd.DataFrame:
    """Per word: embedding, every gate's W_ih x, the state-writing block and W_oh W_ih x."""
    emb = np.asarray(p["emb"], float)                 # [vocab, in]
    w_ih = np.asarray(p["cell"]["W_ih"], float)       # [gates*h, in]
    w_oh = np.asarray(p["out"]["W"], float)           # [n_out, h]
    names = gate_names(cell)
    h = w_ih.shape[0] // len(names)
    blocks = [w_ih[k * h:(k + 1) * h] for k in range(len(names))]
    cand = blocks[candidate_block(cell)]
    cols: dict = {"word": np.arange(emb.shape[0]), "kind": [word_kind(w) for w in range(emb.shape[0])]}
    for j in range(emb.shape[1]):
        cols[f"emb_{j + 1}"] = emb[:, j]
    wx = emb @ cand.T
    for j in range(h):
        cols[f"wx_{j + 1}"] = wx[:, j]
    if len(names) > 1:
        for name, blk in zip(names, blocks):
            gx = emb @ blk.T
            for j in range(h):
                cols[f"wx_{name}_{j + 1}"] = gx[:, j]
    owx = wx @ w_oh.T
    for j in range(owx.shape[1]):
        cols[f"owx_{j + 1}"] = owx[:, j]
    cols["owx_diff"] = owx[:, -1] - owx[:, 0]          # logit(positive) - logit(negative)
    cols["wx_full_norm"] = np.linalg.norm(emb @ w_ih.T, axis=1)
    df = pd.DataFrame(cols)
    df.insert(0, "model", model)
    df.insert(0, "cell", cell)
    return df


def execute(ctx) -> dict[str, pd.DataFrame]:
    cfg = ctx.config
    outs = ctx.map(train_shard, population_shards(cfg, tag=1), desc=ctx.name)
    summary = pd.concat([o["summary"] for o in outs], ignore_index=True)
    models = models_table(summary, cfg["min_val_acc"])
    words = []
    for cell, o in zip(cfg["cells"], outs):
        for m in sorted(o["params"].model.unique()):
            words.append(word_rows(cell, int(m), params_from_frame(o["params"], int(m))))
    words = pd.concat(words, ignore_index=True)
    words = words.merge(models[["cell", "model", "selected"]], on=["cell", "model"])
    return {"models": models, "words": words}


# ----------------------------------------------------------------------------- claims


def separable(x_pos: np.ndarray, x_neg: np.ndarray) -> bool:
    """Exact hard-margin test: is there (w, b) with w.x + b >= 1 on x_pos and <= -1 on x_neg?"""
    from scipy.optimize import linprog
    x = np.vstack([x_pos, x_neg]).astype(float)
    if not np.all(np.isfinite(x)):
        return False
    y = np.r_[np.ones(len(x_pos)), -np.ones(len(x_neg))]
    d = x.shape[1]
    a_ub = -y[:, None] * np.hstack([x, np.ones((len(x), 1))])
    res = linprog(np.zeros(d + 1), A_ub=a_ub, b_ub=-np.ones(len(x)), bounds=[(None, None)] * (d + 1),
                  method="highs")
    return res.status == 0


def _cols(df: pd.DataFrame, prefix: str) -> list[str]:
    return [c for c in df.columns if c.startswith(prefix) and c[len(prefix):].isdigit()]


def model_measures(words: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, model): separable in W_ih x, in W_oh W_ih x, and the stop/non-stop norm ratio."""
    rows = []
    wx_c, owx_c = _cols(words, "wx_"), _cols(words, "owx_")
    for (cell, model), g in words.groupby(["cell", "model"], sort=False):
        pos, neg = g[g.kind == "pos"], g[g.kind == "neg"]
        sep_wx = separable(pos[wx_c].to_numpy(), neg[wx_c].to_numpy())
        sep_owx = separable(pos[owx_c].to_numpy(), neg[owx_c].to_numpy())
        stop_n = g[g.kind == "stop"].wx_full_norm.to_numpy(float)
        sent_n = g[g.kind != "stop"].wx_full_norm.to_numpy(float)
        ratio = float(np.median(stop_n) / max(np.median(sent_n), 1e-12)) if len(stop_n) and len(sent_n) else np.nan
        readout_sep = bool(pos.owx_diff.min() > neg.owx_diff.max()) if len(pos) and len(neg) else False
        rows.append((cell, model, sep_wx, sep_owx, readout_sep, ratio))
    return pd.DataFrame(rows, columns=["cell", "model", "separable_wx", "separable_owx",
                                       "readout_separates", "stop_ratio"])


SEPARABLE = Declaration(
    "pos-neg-separable-{cell}",
    "For {cell}, positive and negative words are linearly separable both in W_ih x and in W_oh W_ih x.",
    "fraction of {cell} models with val acc >= {thr:g} where both are separable",
    0.5, ">", 0.3, "proportion", effect=False, units="qualifying models",
    paper="Interestingly, the positive and negative words are linearly separable. ... Also, the points for the "
          "positive and the negative words are linearly separable.", figure="words")
STOP_NOT_NULL = Declaration(
    "stop-not-null-{cell}",
    "For {cell}, stop words are NOT mapped to the null space of W_ih (the paper's negative finding): "
    "||W_ih x_stop|| stays above {ratio:g} x ||W_ih x_sentiment|| in most models.",
    "fraction of qualifying {cell} models with median||W_ih x_stop|| / median||W_ih x_sentiment|| > {ratio:g}",
    0.5, ">", 0.3, "proportion", effect=False, units="qualifying models",
    paper="We have expected the stop words to belong to the null space of the input matrix in the case of "
          "Vanilla RNN. But in Fig. 1(b), we did not observe this.", figure="words")
DECLARATIONS = [SEPARABLE, STOP_NOT_NULL]


def claims(tables: dict, config: dict) -> list:
    models, words = tables["models"], tables["words"]
    meas = model_measures(words).merge(models[["cell", "model", "best_val_acc"]], on=["cell", "model"])
    thr, ratio = float(config["min_val_acc"]), float(config["null_ratio"])
    out = []
    for cell in cells_list(config["cells"]):
        m = meas[(meas.cell == cell) & (meas.best_val_acc >= thr)]
        n = len(m)
        k = int((m.separable_wx & m.separable_owx).sum())
        scale = ("inits", config["inits"])
        det = {"cell": cell, "qualifying_models": n, "models": int((meas.cell == cell).sum()),
               "separable_both": k, "separable_wx": int(m.separable_wx.sum()),
               "separable_owx": int(m.separable_owx.sum()),
               "readout_separates": int(m.readout_separates.sum()), "min_val_acc": thr}
        sep = replace(SEPARABLE, threshold=float(config["separable_frac"]))
        out.append(sep.decide(stats.proportion(k, n, sep.level(config)), dict(cell=cell, thr=thr), det, scale))
        r = m.stop_ratio.dropna().to_numpy(float)
        med = stats.quantile(r, 0.5)
        out.append(STOP_NOT_NULL.decide(
            stats.proportion(int((r > ratio).sum()), len(r), STOP_NOT_NULL.level(config)), dict(cell=cell, ratio=ratio),
            {"cell": cell, "qualifying_models": n, "ratios": [round(float(x), 4) for x in r],
             "median_ratio": med.value if med.defined else None, "median_ratio_interval": med.interval}, scale))
    return out


# ----------------------------------------------------------------------------- figures


def _scatter(ax, g: pd.DataFrame, xc: str, yc: str | None, title: str, xl: str, yl: str):
    for kind in ("stop", "pos", "neg"):
        s = g[g.kind == kind]
        y = s[yc] if yc else np.zeros(len(s))
        ax.scatter(s[xc], y, color=KIND_COLORS[kind], label=kind, s=36, edgecolor="black", linewidth=0.4,
                   zorder=3)
        for _, r in s.iterrows():
            ax.annotate(str(int(r.word)), (r[xc], r[yc] if yc else 0.0), textcoords="offset points",
                        xytext=(4, 3), fontsize=7)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)


def figures(tables: dict, config: dict) -> dict:
    models, words = tables["models"], tables["words"]
    cells = cells_list(config["cells"])
    fig, axes = style.figure(len(cells), 3, w=3.5, h=3.2)
    letters = iter("abcdefghijklmnopqrstuvwxyz" * 4)
    for r, cell in enumerate(cells):
        sel = models[(models.cell == cell) & models.selected]
        if sel.empty:
            continue
        mrow = sel.iloc[0]
        g = words[(words.cell == cell) & (words.model == mrow.model)]
        acc = f"val acc {100 * mrow.best_val_acc:.0f}%"
        has2 = "emb_2" in g.columns
        _scatter(axes[r][0], g, "emb_1", "emb_2" if has2 else None,
                 f"({next(letters)}) {cell}: word vectors x ({acc})", "x_1", "x_2" if has2 else "")
        blk = gate_names(cell)[candidate_block(cell)] if len(gate_names(cell)) > 1 else ""
        lab = f"W_i{blk} x" if blk else "W_ih x"
        has2 = "wx_2" in g.columns
        _scatter(axes[r][1], g, "wx_1", "wx_2" if has2 else None, f"({next(letters)}) {cell}: {lab}",
                 f"({lab})_1", f"({lab})_2" if has2 else "")
        _scatter(axes[r][2], g, "owx_1", "owx_2", f"({next(letters)}) {cell}: W_oh {lab}",
                 "output 1 (negative)", "output 2 (positive)")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Count, input {config['input']} x hidden {config['hidden']}: best model per cell "
                 f"({config['scale']} scale)", fontsize=11)
    fig.tight_layout()
    figs = {"words": fig}
    gated = [c for c in cells if len(gate_names(c)) > 1]
    if gated:
        ng = max(len(gate_names(c)) for c in gated)
        fig2, ax2 = style.figure(len(gated), ng, w=3.2, h=3.0)
        for r, cell in enumerate(gated):
            sel = models[(models.cell == cell) & models.selected]
            if sel.empty:
                continue
            g = words[(words.cell == cell) & (words.model == sel.iloc[0].model)]
            for c, name in enumerate(gate_names(cell)):
                has2 = f"wx_{name}_2" in g.columns
                _scatter(ax2[r][c], g, f"wx_{name}_1", f"wx_{name}_2" if has2 else None,
                         f"{cell}: W_i{name} x", "dim 1", "dim 2" if has2 else "")
            for c in range(len(gate_names(cell)), ng):
                ax2[r][c].axis("off")
        ax2[0][0].legend(fontsize=7, loc="best")
        fig2.suptitle("Input projection of every word into each gate (best model)", fontsize=11)
        fig2.tight_layout()
        figs["gate_projections"] = fig2
    return figs


def run(config=None, **kw):
    return base.run(NAME, config, **kw)
