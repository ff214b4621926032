"""Newer gated cells against the vanilla RNN on the same small problems (beyond the papers).

The papers compare only the vanilla RNN with the GRU. This experiment asks whether the GRU's
advantage is a property of gating in general: the vanilla RNN, the GRU, the LSTM, the UGRNN
(Collins, Sohl-Dickstein & Sussillo 2017) and minGRU (Feng et al. 2024, computed with its
parallel scan) are trained at the same (input, hidden) sizes from many inits, exactly like
``capacity-inits`` (one padded population per task and cell, the M protocol), and read the
same way: best-of-N accuracy (capacity) and the fraction of good inits (trainability).

Claims (the capacity-inits declarations, for every cell against the first of ``cells``):
  * similar capacity: at 4x4 both the cell and the vanilla RNN have inits reaching the paper's
    97% (existence; exact simultaneous intervals);
  * more good inits: the fraction of inits reaching ``good_acc`` is far higher than the vanilla
    RNN's (Newcombe interval of the difference, min effect 0.3).
"""
from __future__ import annotations

import pandas as pd

from ..errors import ConfigError
from . import base
from . import capacity_inits as ci
from .trainability_grid import PAPER_SIZES, run_grid

NAME = "gated-cells"
PAPER = "beyond"
SOURCE = "beyond the papers: the capacity-inits protocol (Mehta V.B) on LSTM, UGRNN and minGRU"
QUESTION = ("Do the LSTM, the UGRNN and minGRU share the GRU's advantage over the vanilla RNN: about "
            "the same best-of-N accuracy, but far more inits that train?")
ORDER = 0
VERSION = 1
ROUNDS = ci.ROUNDS
DECLARATIONS = ci.DECLARATIONS
CHOICES = {
    "cells": "rnn-tanh (the baseline: first of `cells`), gru, lstm, ugrnn, mingru at the same (input, hidden); "
             "parameter counts differ (an LSTM has 4 gate blocks, minGRU 2), as in the papers' comparison",
    "good_acc": "an init is 'good' when its best validation accuracy is >= 0.9 (as capacity-inits)",
    "capacity_levels": "capacity-inits' levels (the paper's 97% at 4x4); held-out test accuracy, validation "
                       "accuracy at quick scale (no test split there)",
    "paper": "paper scale: First and Xor, input 4 x hidden 4 (one of capacity-inits' sizes), 30 inits, the "
             "M protocol (Adam 1e-3, up to 150 epochs, 8000/2000/3000 sequences); other sizes with "
             "--set inputs=[2,4] hiddens=[2,4]",
    "quick": "quick scale: First only, input 4 x hidden 4, 12 inits (the power estimate of a 6-init run for more-good-inits gru/lstm), trained with the paper's full M protocol (8000/2000/3000 sequences, Adam 1e-3, Mehta's stopping rule, up to 150 epochs)",
    "tiny": "tiny scale (tests only): 2 inits, 300/200/200 sequences, 2 epochs",
}


def default_config(scale: str) -> dict:
    cfg = {"seed": 0, "cells": ["rnn-tanh", "gru", "lstm", "ugrnn", "mingru"], "tasks": ["first", "xor"],
           "inputs": [4], "hiddens": [4], "inits": 30, "init_scheme": "torch", "protocol": "mehta",
           "max_epochs": 150, "lr": None, "data_sizes": dict(PAPER_SIZES), "good_acc": 0.9,
           "capacity_levels": dict(ci.PAPER_LEVELS), "capacity_tasks": ["first"]}
    if scale == "quick":
        cfg.update(tasks=["first"], inits=12)
    elif scale == "tiny":
        cfg.update(tasks=["first"], inits=2, max_epochs=2,
                   data_sizes={"train": 300, "val": 200, "test": 200})
    return cfg


def validate(cfg: dict) -> None:
    ci.validate(cfg)
    if len(cfg["cells"]) < 2:
        raise ConfigError("cells: at least two cells are needed (the first is the baseline)")
    if cfg["lr"] is not None:
        try:
            cfg["lr"] = float(cfg["lr"])
        except (TypeError, ValueError):
            cfg["lr"] = float("nan")
        if not cfg["lr"] > 0:
            raise ConfigError(f"lr: must be a number > 0 (or null: the protocol's), got {cfg['lr']!r}")


def execute(ctx) -> dict[str, pd.DataFrame]:
    acc, curves = run_grid(ctx, tag=9)
    return {"accuracy": acc, "curves": curves}


def claims(tables: dict, config: dict) -> list:
    return ci.claims(tables, config, paper_note="; Mehta's finding for the GRU, asked here of every cell")


def figures(tables: dict, config: dict) -> dict:
    return ci.figures(tables, config)


def run(config=None, **kw):
    return base.run(NAME, config, **kw)
