"""Vanilla RNN against GRU on the embedded Reber grammar (Sterin et al. §III, Figs 6-8).

A population of seeds of each cell (paper: one 18-unit ``rnn-sigmoid`` and one 10-unit ``gru-s``,
~590 parameters each) is trained on next-symbol prediction over 2000 embedded Reber strings with
the Sterin protocol. The *long-term accuracy* of a model is the fraction of held-out strings for
which the prediction made after the inner E is the T or P seen in second position. The output
and hidden layers of the best seed of each cell are drawn over the prefixes of a few strings with
their automaton states (Figs 6-8).

Claim (a declaration, one per cell after the first, which is the vanilla baseline): the gated
cell gets the long-term symbol right and the vanilla one does not: the difference of success
rates (long-term accuracy >= ``success_acc``) over seeds, Newcombe interval, min effect 0.5.

The trained populations (shards) are reused as they are by ``gradient-distribution``.
"""
from __future__ import annotations

import pandas as pd

from ..analysis import stats
from ..analysis.claims import Claim, Declaration
from ..errors import ConfigError
from ..plots import style
from ..tasks.embedded_reber import EMBEDDED_REBER
from . import base
from . import reber as rb

NAME = "embedded-reber"
PAPER = "sterin"
SOURCE = "Sterin et al., section III, Figs 5-8"
QUESTION = ("With about the same number of parameters, does a GRU learn the long-term dependency of "
            "the embedded Reber grammar where a vanilla RNN does not?")
ORDER = 2
VERSION = 1
ROUNDS = rb.ROUNDS
CHOICES = {
    "seeds": "a population of `inits` seeds per cell is trained (the paper trained one model per cell); "
             "the claim compares success rates over seeds (difference, Newcombe 95% interval)",
    "long_term": "long-term accuracy = fraction of held-out TEST strings whose argmax prediction after "
                 "the inner E is the second symbol (T or P), at the checkpoint with the best validation "
                 "valid-prediction rate; the validation value is reported too",
    "success": "a seed succeeds when its long-term accuracy is >= success_acc (0.9)",
    "min_effect": "'GRU gets it right, the vanilla RNN does not': the success rates differ by >= 0.5",
    "vanilla": "the first cell of `cells` is the vanilla baseline",
    "sizes": "rnn-sigmoid k=18 and gru-s k=10 (paper, ~590 parameters); any other cell gets the size "
             "whose parameter count is closest to param_budget (590)",
    "bias": "no cell biases and no readout bias (the paper's equations)",
    "init": "every weight N(0, 1), as in the paper",
    "data": "2000 train strings (paper) + 500 validation + 500 test strings from their own streams",
    "heatmaps": "softmax of the linear outputs and hidden units of the best seed of each cell (highest "
                "validation long-term accuracy, then validation valid-prediction rate, then lowest seed)",
    "quick": "quick scale: the paper's protocol and data (SGD lr 1e-3, one string at a time, up to 1000 epochs "
             "with the authors' halving and stopping, 2000 train strings) with 6 seeds per cell (paper scale 20) "
             "and 2 heatmap strings. The seeds stop after 49-165 epochs. An earlier quick scale cut training to "
             "8 epochs at lr 0.03 on 300 strings; engine.ragged (loops as long as each string) and measuring "
             "the test split once made the full protocol affordable (~1 min on one core)",
    "tiny": "tiny scale (tests only): 3 seeds, 60/40/40 strings, 2 epochs",
}

#: pairs of strings that differ only in their branch symbol (second and second-to-last)
EMBEDDED_STRINGS = ["BTBTXSETE", "BPBTXSEPE", "BTBPVVETE", "BPBPVVEPE"]


def default_config(scale: str) -> dict:
    cfg = {"seed": 0, "cells": ["rnn-sigmoid", "gru-s"], "hidden": {"rnn-sigmoid": 18, "gru-s": 10},
           "param_budget": 590, "inits": 20, "init_scheme": "normal", "bias": False, "protocol": "sterin",
           "optimizer": None, "lr": None, "max_epochs": 1000,
           "data_sizes": {"train": 2000, "val": 500, "test": 500}, "success_acc": 0.9,
           "strings": list(EMBEDDED_STRINGS), "dtype": "float32"}
    if scale == "quick":
        cfg.update(inits=6, strings=EMBEDDED_STRINGS[:2])
    elif scale == "tiny":
        cfg.update(inits=3, lr=0.05, max_epochs=2, data_sizes={"train": 60, "val": 40, "test": 40},
                   strings=EMBEDDED_STRINGS[:2])
    return cfg


def validate(cfg: dict) -> None:
    rb.validate_common(cfg, EMBEDDED_REBER)
    if len(cfg["cells"]) < 2:
        raise ConfigError("cells: needs a vanilla cell and at least one cell to compare with it")
    if not (isinstance(cfg["param_budget"], int) and cfg["param_budget"] >= 1):
        raise ConfigError(f"param_budget: must be a positive integer, got {cfg['param_budget']!r}")


def shards(cfg: dict) -> list[dict]:
    """One training shard per cell; gradient-distribution builds the very same ones."""
    return [rb.training_shard(cfg, c, "embedded-reber") for c in cfg["cells"]]


def train_tables(ctx_like, cfg: dict) -> dict[str, pd.DataFrame]:
    """Train (or read back) every population; concatenated shard tables."""
    outs = ctx_like.map(rb.sequence_shard, shards(cfg), desc=NAME)
    return {t: pd.concat([o[t] for o in outs], ignore_index=True)
            for t in ("summary", "curves", "params", "heatmap")}


def execute(ctx: base.Context) -> dict[str, pd.DataFrame]:
    cfg = ctx.config
    t = train_tables(ctx, cfg)
    summary = t["summary"]
    summary["success"] = summary["long_term_test"] >= cfg["success_acc"]
    return {"summary": summary, "curves": t["curves"], "heatmap": t["heatmap"],
            "success": rb.success_table(summary, "success", cfg["cells"])}


# ----------------------------------------------------------------------------- claims


LONG_TERM = Declaration(
    "long-term[{gated} vs {vanilla}]",
    "{gated} gets the long-term symbol of the embedded Reber grammar right, {vanilla} does not (success: "
    "long-term accuracy >= {acc:.2f})", "success rate of {gated} minus that of {vanilla}",
    0.0, ">", 0.5, "difference", planning={"p_base": 0.25}, units="seeds per cell",
    paper="This figures emphasizes the fact that Vanilla RNNs are unable to capture long term dependencies, whereas "
          "GRU successfully do so.", figure="long_term")
DECLARATIONS = [LONG_TERM]


def claims(tables: dict, cfg: dict) -> list[Claim]:
    summ = tables["summary"]
    vanilla = cfg["cells"][0]
    kn = {}
    for c in cfg["cells"]:
        ok = (summ[summ.cell == c]["long_term_test"] >= cfg["success_acc"]).to_numpy()
        kn[c] = (int(ok.sum()), len(ok))
    out = []
    for c in cfg["cells"][1:]:
        est = stats.proportion_difference(*kn[c], *kn[vanilla], LONG_TERM.level(cfg))
        details = {"gated": c, "vanilla": vanilla, "threshold_acc": cfg["success_acc"],
                   **{f"{x}_successes": f"{kn[x][0]}/{kn[x][1]}" for x in (c, vanilla)},
                   **{f"{x}_median_long_term": float(summ[summ.cell == x].long_term_test.median()) for x in (c, vanilla)}}
        out.append(LONG_TERM.decide(est, dict(gated=c, vanilla=vanilla, acc=cfg["success_acc"]), details,
                                    scale=("inits", cfg["inits"])))
    return out


# ----------------------------------------------------------------------------- figures


def curves_figure(curves: pd.DataFrame, cells: list[str]):
    fig, axes = style.figure(1, 2, w=4.4, h=3.3)
    fig.subplots_adjust(wspace=0.35)
    for c in cells:
        cv = curves[(curves.cell == c) & (curves.epoch >= 1)]
        if cv.empty:
            continue
        piv = cv.pivot_table(index="model", columns="epoch", values="val_acc")
        style.curve_band(axes[0, 0], piv.columns.to_numpy(), piv.to_numpy(), c, style.color(c))
        piv = cv.pivot_table(index="model", columns="epoch", values="loss")
        style.curve_band(axes[0, 1], piv.columns.to_numpy(), piv.to_numpy(), c, style.color(c))
    axes[0, 0].set(xlabel="epoch", ylabel="validation valid-prediction rate", title="Validation (median, IQR)")
    axes[0, 1].set(xlabel="epoch", ylabel="mean training loss per string", title="Training loss", yscale="log")
    for ax in axes[0]:
        ax.legend(fontsize=7)
    return fig


def figures(tables: dict, cfg: dict) -> dict:
    figs = {}
    summ, heat = tables["summary"], tables["heatmap"]
    for c in cfg["cells"]:
        m = rb.best_model(summ, c, ("long_term_val", "best_val_acc"))
        h = heat[(heat.cell == c) & (heat.model == m)]
        if h.empty:
            continue
        r = summ[(summ.cell == c) & (summ.model == m)].iloc[0]
        tag = (f"{c}, k={int(r.hidden)} ({int(r.n_params)} params), seed {int(r.seed)}, "
               f"long-term acc {r.long_term_test:.2f}")
        figs[f"outputs_{c}"] = rb.heatmap_figure(h[h.layer == "output"], "output",
                                                 f"Output layer (softmax), embedded Reber: {tag}")
        figs[f"hidden_{c}"] = rb.heatmap_figure(h[h.layer == "hidden"], "hidden",
                                                f"Hidden layer, embedded Reber: {tag}")
    figs["long_term"] = rb.rates_figure(summ, tables["success"], "long_term_test", cfg["success_acc"],
                                        "long-term accuracy (test)",
                                        "Embedded Reber: symbol after the inner E, per seed")
    figs["curves"] = curves_figure(tables["curves"], cfg["cells"])
    return figs


def run(config=None, **kw):
    return base.run(NAME, config, **kw)
