"""Capacity vs trainability: many inits of small models (Mehta V.B, Figs 5-6).

For every task and cell, ONE padded population holds every (input, hidden) size times every
init. The distribution of best validation accuracy over inits separates *capacity* (the best
init: can the architecture represent the task at all?) from *trainability* (how often an init
gets there).

Claims (declarations; exact or Newcombe intervals on counts, no bootstrap of a maximum):
  * similar capacity, an existence question per size the paper quotes (2x4: 96%, 4x4: 97%):
    both cells have inits whose held-out test accuracy reaches the paper's level - the smaller
    of the two cells' fractions of such inits, with simultaneous exact intervals; it holds when
    each cell has at least one, and fails when a cell's rate is shown below 1 in 30 (the paper
    saw one within 30 inits);
  * trainability: the fraction of good inits (best val acc >= ``good_acc``) is far higher for
    the gated cell (difference of fractions over all sizes x inits, Newcombe, min effect 0.3).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis import stats
from ..analysis.claims import Declaration
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
ROUNDS = {"units": "inits", "offset": "init_offset"}
#: Mehta V.B: "like 96% in (2x4), 97% in (4x4)"
PAPER_LEVELS = {"2x4": 0.96, "4x4": 0.97}
CHOICES = {
    "good_acc": "an init is 'good' when its best validation accuracy is >= 0.9",
    "capacity_levels": "the paper's own levels: 'like 96% in (2x4), 97% in (4x4)' (First, Fig 5), read as the "
                       "paper rounds them (to the nearest percent: acc >= level - 0.005); sizes without a quoted "
                       "level get no capacity claim",
    "capacity_tasks": "First only: the paper quotes levels for First (Fig 5); --set capacity_tasks=[first,xor] "
                      "applies the same levels to Xor",
    "capacity_accuracy": "held-out test accuracy of the best-validation checkpoint (the best validation accuracy "
                         "itself is selected over epochs, so optimistic); validation when a run has no test split",
    "capacity_statistic": "an existence question (the bootstrap of a best-of-N is inconsistent): per cell the "
                          "fraction of inits reaching the level, exact Clopper-Pearson intervals made simultaneous "
                          "for the two cells (Bonferroni); statistic = the smaller fraction; holds when both cells "
                          "have >= 1 such init, fails when a cell's upper bound is below 1/30 (109 inits with none)",
    "good_inits_statistic": "good-init counts pooled over the sizes (equal strata, so the Newcombe interval of the "
                            "pooled difference stays valid); 'far larger fraction': min effect 0.3",
    "vanilla": "the first cell of `cells` is the baseline every other cell is compared to",
    "batch_size": "32 (the paper does not give it)",
    "quick": "quick scale: 8 inits (paper 30) trained with the paper's full M protocol (8000/2000/3000 sequences, Adam 1e-3, Mehta's stopping rule, up to 150 epochs); no truncated training (8 epochs left "
             "every model on the 50% plateau and decided nothing)",
    "tiny": "tiny scale (tests only): 2 inits, 300/200/200 sequences, 2 epochs",
}


def default_config(scale: str) -> dict:
    cfg = {"seed": 0, "cells": ["rnn-tanh", "gru"], "tasks": ["first", "xor"],
           "inputs": [2, 4], "hiddens": [2, 4], "inits": 30, "init_scheme": "torch",
           "protocol": "mehta", "max_epochs": 150, "data_sizes": dict(PAPER_SIZES),
           "good_acc": 0.9, "capacity_levels": dict(PAPER_LEVELS), "capacity_tasks": ["first"]}
    if scale == "quick":
        cfg.update(inits=8)
    elif scale == "tiny":
        cfg.update(inits=2, max_epochs=2, data_sizes={"train": 300, "val": 200, "test": 200})
    return cfg


def validate(cfg: dict) -> None:
    validate_common(cfg)
    if not (0 <= cfg["good_acc"] <= 1):
        raise ConfigError(f"good_acc: must be in [0, 1], got {cfg['good_acc']!r}")
    if not isinstance(cfg["capacity_levels"], dict) or any(
            not isinstance(v, (int, float)) or not 0 < v <= 1 for v in cfg["capacity_levels"].values()):
        raise ConfigError(f"capacity_levels: expected {{'IxH': level in (0, 1]}}, got {cfg['capacity_levels']!r}")
    cfg["capacity_tasks"] = cells_list(cfg["capacity_tasks"])


def execute(ctx) -> dict[str, pd.DataFrame]:
    acc, curves = run_grid(ctx, tag=4)
    return {"accuracy": acc, "curves": curves}


# ----------------------------------------------------------------------------- claims


SIMILAR_CAPACITY = Declaration(
    "similar-capacity-{task}-{size}-{gated}-vs-{vanilla}",
    "On {task} at {size}, both {vanilla} and {gated} have inits whose test accuracy reaches {level:.0%} "
    "(similar capacity{note}).",
    "min over {{{vanilla}, {gated}}} of the fraction of inits with test acc >= {level:.0%} at {size}",
    0.0, ">", 1 / 30, "existence", planning={"m": 2}, units="inits per cell at that size",
    paper="Vanilla RNN could also achieve the high validation accuracy in the less number of parameters (like "
          "96% in (2x4),97% in (4x4)) ... Vanilla RNN and GRU have the similar capacity",
    figure="inits_{task}")
MORE_GOOD = Declaration(
    "more-good-inits-{task}-{gated}-vs-{vanilla}",
    "On {task}, a far larger fraction of inits reaches best val acc >= {good:g} with {gated} than with "
    "{vanilla} (good inits are rarer for the vanilla RNN).",
    "fraction of good inits {gated} - {vanilla} over all sizes x inits",
    0.0, ">", 0.3, "difference", planning={"p_base": 0.1}, units="models per cell (sizes x inits)",
    paper="good initializations in the Vanilla RNNs are much more rare compared to those in the GRU",
    figure="inits_{task}")
DECLARATIONS = [SIMILAR_CAPACITY, MORE_GOOD]
PAPER_NOTE = "; paper: 'like 96% in (2x4), 97% in (4x4)'"


def _accuracy(sel: pd.DataFrame) -> tuple[np.ndarray, str]:
    if "test_acc" in sel and sel.test_acc.notna().any():
        return sel.test_acc.to_numpy(float), "test_acc"
    return sel.best_val_acc.to_numpy(float), "best_val_acc"


def claims(tables: dict, config: dict, paper_note: str = PAPER_NOTE) -> list:
    """The claims for every (task, gated cell); `paper_note` is the reference the capacity claim's
    text quotes (gated-cells, beyond the paper, quotes none)."""
    acc = tables["accuracy"]
    cells = cells_list(config["cells"])
    vanilla, good, out = cells[0], float(config["good_acc"]), []
    scale = ("inits", config["inits"])
    for task in config["tasks"]:
        for gated in cells[1:]:
            if task in config["capacity_tasks"]:
                for size, level in config["capacity_levels"].items():
                    e, h = (int(v) for v in size.split("x"))
                    if e not in config["inputs"] or h not in config["hiddens"]:
                        continue
                    lv = stats.bonferroni(SIMILAR_CAPACITY.level(config), 2)
                    ests, det = [], {"task": task, "size": size, "level": level}
                    for c in (vanilla, gated):
                        a, col = _accuracy(acc[(acc.task == task) & (acc.cell == c) & (acc.input == e)
                                               & (acc.hidden == h)])
                        a = a[np.isfinite(a)]
                        k = int((a >= level - 0.005).sum())
                        ests.append(stats.proportion(k, len(a), lv))
                        det.update({f"reached_{c}": f"{k}/{len(a)}", f"best_{c}": float(a.max()) if len(a) else None,
                                    "accuracy": col})
                    est = stats.extreme(ests, "min", SIMILAR_CAPACITY.level(config), "cells")
                    out.append(SIMILAR_CAPACITY.decide(
                        est, dict(task=task, size=size, gated=gated, vanilla=vanilla, level=level, note=paper_note),
                        det, scale=scale))
            sel = acc[(acc.task == task) & acc.input.isin(config["inputs"]) & acc.hidden.isin(config["hiddens"])]
            g = sel[sel.cell == gated].best_val_acc.dropna().to_numpy(float)
            v = sel[sel.cell == vanilla].best_val_acc.dropna().to_numpy(float)
            kg, kv = int((g >= good).sum()), int((v >= good).sum())
            est = stats.proportion_difference(kg, len(g), kv, len(v), MORE_GOOD.level(config))
            out.append(MORE_GOOD.decide(est, dict(task=task, gated=gated, vanilla=vanilla, good=good),
                                        {"task": task, f"good_{gated}": f"{kg}/{len(g)}",
                                         f"good_{vanilla}": f"{kv}/{len(v)}", "good_acc": good}, scale=scale))
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
