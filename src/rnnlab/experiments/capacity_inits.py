"""Capacity vs trainability: many inits of small models (Mehta V.B, Figs 5-6).

For every task and cell, ONE padded population holds every (input, hidden) size times every
init. The distribution of best validation accuracy over inits separates *capacity* (the best
init: can the architecture represent the task at all?) from *trainability* (how often an init
gets there).

Claims (computed from the run):
  * similar capacity: mean over sizes of |best-of-N(gated) - best-of-N(vanilla)| is within
    ``capacity_tol`` (bootstrap over inits: interval below tol -> holds, above -> fails);
  * trainability: the fraction of good inits (best val acc >= ``good_acc``) is higher for the
    gated cell (difference of fractions over all sizes x inits, bootstrap interval > 0).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis.claims import threshold_claim
from ..errors import ConfigError
from ..plots import style
from . import base
from .common import cells_list
from .trainability_grid import PAPER_SIZES, run_grid, validate_common

NAME = "capacity-inits"
PAPER = "mehta"
SOURCE = "Mehta, section V.B, Figs 5-6"
QUESTION = ("Given many inits of the same small architecture, does the vanilla RNN reach the GRU's best "
            "accuracy (capacity), and how often does an init succeed (trainability)?")
ORDER = 4
VERSION = 1
CHOICES = {
    "good_acc": "an init is 'good' when its best validation accuracy is >= 0.9",
    "capacity_tol": "best-of-N accuracies count as similar when they differ by <= 0.03 on average "
                    "over the sizes (the paper compares 96-97% with ~100% by eye)",
    "capacity_statistic": "mean over (input, hidden) of |max over inits(gated) - max over inits(vanilla)|, "
                          "bootstrap by resampling the inits of each (cell, size); only sizes where some "
                          "init of either cell reached good_acc count (else inconclusive)",
    "no_good": "when no init of either cell is good on a task the good-inits claim is inconclusive",
    "vanilla": "the first cell of `cells` is the baseline every other cell is compared to",
    "batch_size": "32 (the paper does not give it)",
    "quick": "quick scale: 8 inits (paper 30), 1000 train / 500 val / 500 test sequences, at most 8 "
             "epochs (paper: 8000/2000/3000, up to 150 epochs): too little training for these small models "
             "to leave the 50% plateau, so quick verdicts say little",
    "tiny": "tiny scale (tests only): 2 inits, 300/200/200 sequences, 2 epochs",
}


def default_config(scale: str) -> dict:
    cfg = {"seed": 0, "cells": ["rnn-tanh", "gru"], "tasks": ["first", "xor"],
           "inputs": [2, 4], "hiddens": [2, 4], "inits": 30, "init_scheme": "torch",
           "protocol": "mehta", "max_epochs": 150, "data_sizes": dict(PAPER_SIZES),
           "good_acc": 0.9, "capacity_tol": 0.03, "n_boot": 2000}
    if scale == "quick":
        cfg.update(inits=8, max_epochs=8, data_sizes={"train": 1000, "val": 500, "test": 500})
    elif scale == "tiny":
        cfg.update(inits=2, max_epochs=2, data_sizes={"train": 300, "val": 200, "test": 200}, n_boot=200)
    return cfg


def validate(cfg: dict) -> None:
    validate_common(cfg)
    for k in ("good_acc", "capacity_tol"):
        if not (0 <= cfg[k] <= 1):
            raise ConfigError(f"{k}: must be in [0, 1], got {cfg[k]!r}")


def execute(ctx) -> dict[str, pd.DataFrame]:
    acc, curves = run_grid(ctx, tag=4)
    return {"accuracy": acc, "curves": curves}


# ----------------------------------------------------------------------------- claims


def _capacity_stat(groups: list[tuple[np.ndarray, np.ndarray]]) -> float:
    return float(np.mean([abs(np.max(g) - np.max(v)) for g, v in groups]))


def _boot_capacity(groups, n_boot: int, seed: int):
    value = _capacity_stat(groups)
    if any(len(g) < 2 or len(v) < 2 for g, v in groups):
        return value, None
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        reps[b] = _capacity_stat([(g[rng.integers(0, len(g), len(g))], v[rng.integers(0, len(v), len(v))])
                                  for g, v in groups])
    return value, (float(np.quantile(reps, 0.025)), float(np.quantile(reps, 0.975)))


def _boot_frac_diff(g: np.ndarray, v: np.ndarray, n_boot: int, seed: int):
    """Difference of success fractions; inits resampled within each (cell, size) (stratified)."""
    def stat(gs, vs):
        return np.mean(np.concatenate(gs)) - np.mean(np.concatenate(vs))
    value = float(stat(g, v))
    if any(len(x) < 2 for x in list(g) + list(v)):
        return value, None
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        reps[b] = stat([x[rng.integers(0, len(x), len(x))] for x in g],
                       [x[rng.integers(0, len(x), len(x))] for x in v])
    return value, (float(np.quantile(reps, 0.025)), float(np.quantile(reps, 0.975)))


PAPER_NOTE = "paper: RNN 96-97% vs GRU ~100% at 2x4, 4x4"


def claims(tables: dict, config: dict, paper_note: str = PAPER_NOTE) -> list:
    """The two claims for every (task, gated cell); `paper_note` is the reference the capacity
    claim's text quotes (gated-cells, beyond the paper, quotes none)."""
    acc = tables["accuracy"]
    cells = cells_list(config["cells"])
    vanilla = cells[0]
    good, tol, nb = float(config["good_acc"]), float(config["capacity_tol"]), int(config["n_boot"])
    out = []
    for task in config["tasks"]:
        for gated in cells[1:]:
            groups, per_size, gs, vs = [], {}, [], []
            for e in config["inputs"]:
                for h in config["hiddens"]:
                    sel = acc[(acc.task == task) & (acc.input == e) & (acc.hidden == h)]
                    g = sel[sel.cell == gated].best_val_acc.dropna().to_numpy(float)
                    v = sel[sel.cell == vanilla].best_val_acc.dropna().to_numpy(float)
                    if len(g) == 0 or len(v) == 0:
                        continue
                    if max(g.max(), v.max()) >= good:     # capacity is compared where a cell learned the task
                        groups.append((g, v))
                    gs.append((g >= good).astype(float))
                    vs.append((v >= good).astype(float))
                    per_size[f"{e}x{h}"] = {f"best_{gated}": float(g.max()), f"best_{vanilla}": float(v.max()),
                                            f"good_frac_{gated}": float((g >= good).mean()),
                                            f"good_frac_{vanilla}": float((v >= good).mean())}
            if groups:
                value, ci = _boot_capacity(groups, nb, config["seed"])
            else:
                value, ci = float("nan"), None
            out.append(threshold_claim(
                f"similar-capacity-{task}-{gated}-vs-{vanilla}",
                f"On {task}, the best of N inits of {vanilla} is about as accurate as the best of N inits "
                f"of {gated} (similar capacity" + (f"; {paper_note})." if paper_note else ")."),
                f"mean over sizes of |max val acc {gated} - max val acc {vanilla}| over inits",
                value, ci, tol, "<",
                details={"task": task, "tolerance": tol, "per_size": per_size,
                         "inits": int(config["inits"]), "sizes_compared": len(groups),
                         "note": "sizes where neither cell reached good_acc are left out; none left -> "
                                 "inconclusive"}))
            if gs and (np.concatenate(gs).any() or np.concatenate(vs).any()):
                value, ci = _boot_frac_diff(gs, vs, nb, config["seed"])
                fg, fv = float(np.mean(np.concatenate(gs))), float(np.mean(np.concatenate(vs)))
            elif gs:       # no good init at all: too little training to compare trainability
                value, ci = float("nan"), None
                fg, fv = 0.0, 0.0
            else:
                value, ci, fg, fv = float("nan"), None, None, None
            out.append(threshold_claim(
                f"more-good-inits-{task}-{gated}-vs-{vanilla}",
                f"On {task}, a far larger fraction of inits reaches best val acc >= {good:g} with {gated} "
                f"than with {vanilla} (good inits are rarer for the vanilla RNN).",
                f"fraction of good inits {gated} - {vanilla} over all sizes x inits",
                value, ci, 0.0, ">",
                details={"task": task, f"good_frac_{gated}": fg, f"good_frac_{vanilla}": fv,
                         "good_acc": good}))
    return out


# ----------------------------------------------------------------------------- figures


def figures(tables: dict, config: dict) -> dict:
    acc = tables["accuracy"]
    cells = cells_list(config["cells"])
    sizes = [(e, h) for e in config["inputs"] for h in config["hiddens"]]
    ncols = min(4, len(sizes))
    nrows = -(-len(sizes) // ncols)
    figs = {}
    rng = np.random.default_rng(0)
    for task in config["tasks"]:
        fig, axes = style.figure(nrows, ncols, w=max(2.6, 1.3 * len(cells) + 1.2), h=3.2, sharey=True)
        for k, (e, h) in enumerate(sizes):
            ax = axes[k // ncols][k % ncols]
            data = [100 * acc[(acc.task == task) & (acc.cell == c) & (acc.input == e) & (acc.hidden == h)]
                    .best_val_acc.dropna().to_numpy(float) for c in cells]
            ax.boxplot([d if len(d) else [np.nan] for d in data], widths=0.55, showfliers=False,
                       medianprops={"color": "black"})
            for i, (c, d) in enumerate(zip(cells, data)):
                ax.scatter(i + 1 + rng.uniform(-0.18, 0.18, len(d)), d, s=14, alpha=0.75,
                           color=style.color(c), edgecolor="none", label=c, zorder=3)
                if len(d):
                    ax.text(i + 1, 101, f"max {np.max(d):.0f}", ha="center", va="bottom", fontsize=7)
            ax.axhline(100 * config["good_acc"], color="grey", lw=0.8, ls="--")
            ax.set_xticks(range(1, len(cells) + 1), cells, fontsize=8)
            ax.set_ylim(40, 106)
            ax.set_title(f"input {e} x hidden {h}", fontsize=9)
            if k % ncols == 0:
                ax.set_ylabel("best val acc (%)")
        for k in range(len(sizes), nrows * ncols):
            axes[k // ncols][k % ncols].axis("off")
        fig.suptitle(f"{task.capitalize()}: best validation accuracy over {config['inits']} inits "
                     f"(dashed: good >= {100 * config['good_acc']:.0f}%; {config['scale']} scale)", fontsize=10)
        fig.tight_layout()
        figs[f"inits_{task}"] = fig
    return figs


def run(config=None, **kw):
    return base.run(NAME, config, **kw)
