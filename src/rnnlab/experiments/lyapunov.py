"""Lyapunov spectra of trained and random populations (beyond the papers).

The (l,k)-discrepancy of Stérin et al. asks whether a network can still tell apart two inputs
that differ only at the start; the Lyapunov spectrum answers it for the dynamics actually
driven by task inputs. A more negative largest exponent means faster forgetting.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..analysis import stats
from ..analysis.claims import Declaration
from ..analysis.lyapunov import population_spectra
from ..engine import model as mdl
from ..plots import style
from . import base
from .common import cells_list, train_population

NAME = "lyapunov"
PAPER = "beyond"
SOURCE = "beyond the papers: the principled form of Stérin et al. §V"
QUESTION = ("Is the largest Lyapunov exponent of trained vanilla RNNs more negative than the "
            "GRU's (faster forgetting) on the First and embedded-Reber tasks?")
ORDER = 1
VERSION = 1
ROUNDS = {"units": "inits", "offset": "init_offset"}
CHOICES = {
    "protocol": "Adam (Mehta's protocol) for both tasks, so that training is fast; embedded Reber "
                "uses one-hot inputs and the squared-error-free cross-entropy per step; the full protocol (up to "
                "150 epochs with its stopping rule, 8000 First / 2000 embedded-Reber training sequences) at every "
                "scale: an earlier quick scale cut it to 12 epochs on 2000 / 800 sequences",
    "scale": "quick: 6 inits per cell, 3 driving sequences of 300 steps; paper: 20 inits, 8 of 1000 steps",
    "trajectory": "task sequences of the validation split concatenated without resetting the state",
    "burn_in": "50 steps discarded before averaging log|diag R|",
    "random": "the same architectures at their init scheme (torch for First, normal for Reber)",
    "claim": "difference of MEAN lambda1 (vanilla - gated) over trained models, Welch t interval; 'more "
             "negative' needs at least 0.1 per step (a factor exp(-1) more forgetting over a 10-word sentence)",
}


def default_config(scale: str) -> dict:
    quick = scale != "paper"
    tiny = scale == "tiny"
    return {
        "seed": 0,
        "cells": ["rnn-tanh", "gru"],
        "reber_cells": ["rnn-sigmoid", "gru-s"],
        "first_input": 4, "first_hidden": 4,
        "reber_hidden": 10,
        "inits": 3 if tiny else 6 if quick else 20,
        "max_epochs": 2 if tiny else 150,
        "train_size": 300 if tiny else 8000,
        "reber_train_size": 200 if tiny else 2000,
        "n_seq": 2 if tiny else 3 if quick else 8,
        "steps": 120 if tiny else 300 if quick else 1000,
        "burn_in": 20 if tiny else 50,
    }


def validate(cfg: dict) -> None:
    cfg["reber_cells"] = base.check_cells(cfg["reber_cells"], "reber_cells")


def _settings(cfg):
    out = []
    for c in cells_list(cfg["cells"]):
        out.append(("first", c, cfg["first_input"], cfg["first_hidden"], "torch"))
    for c in cells_list(cfg["reber_cells"]):
        out.append(("embedded-reber", c, 7, cfg["reber_hidden"], "normal"))
    return out


def _stream(data, n_seq, steps, rng):
    """n_seq token streams of `steps` tokens: task sequences concatenated."""
    toks = [data.tokens[i, :data.lengths[i]] for i in range(len(data))]
    streams = []
    for _ in range(n_seq):
        order = rng.permutation(len(toks))
        s = np.concatenate([toks[i] for i in order])
        while len(s) < steps:
            s = np.concatenate([s, s])
        streams.append(s[:steps])
    return np.stack(streams)


def spectra_shard(shard: dict) -> dict[str, pd.DataFrame]:
    res, data = train_population(shard)
    spec = res.population.spec
    pop = res.population
    rng = np.random.default_rng([shard["seeds"][0], 99])
    streams = _stream(data["val"], shard["n_seq"], shard["steps"], rng)          # [n_seq, T]
    rows = []
    for condition in ("trained", "random"):
        if condition == "trained":
            trees = [pop.model_params(i, res.best_params) for i in range(pop.size)]
        else:
            trees = [mdl.init_params_np(spec, int(s) + 10_000, int(e), int(h))
                     for s, e, h in zip(pop.seeds, pop.input_dims, pop.hiddens)]
        stack = jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs), jnp.float64), *trees)
        xs = jax.vmap(lambda p: mdl.embed_inputs(spec.__class__(**{**spec.to_dict(), "dtype": "float64"}), p,
                                                 jnp.asarray(streams)))(stack)         # [M, n_seq, T, in]
        lam = np.asarray(population_spectra(spec.cell, stack["cell"], xs, shard["burn_in"]))
        for i in range(pop.size):
            for j in range(lam.shape[1]):
                for k, v in enumerate(lam[i, j]):
                    rows.append((shard["task"], spec.cell, condition, i, j, k + 1, float(v)))
    spectra = pd.DataFrame(rows, columns=["task", "cell", "condition", "model", "sequence", "index", "exponent"])
    summary = res.summary.assign(task=shard["task"])
    return {"spectra": spectra, "summary": summary}


def execute(ctx: base.Context) -> dict[str, pd.DataFrame]:
    cfg = ctx.config
    shards = []
    for si, (task, cell, e, h, init) in enumerate(_settings(cfg)):
        sizes = {"train": cfg["reber_train_size"] if task != "first" else cfg["train_size"],
                 "val": 200 if cfg["scale"] == "tiny" else 500}
        shards.append({"task": task, "task_seed": cfg["seed"], "cell": cell, "init": init,
                       "sizes": [[e, h]] * cfg["inits"],
                       "seeds": [cfg["seed"] * 100_000 + si * 1000 + i
                                 for i in range(cfg.get("init_offset", 0), cfg.get("init_offset", 0) + cfg["inits"])],
                       "protocol": "mehta", "max_epochs": cfg["max_epochs"], "data_sizes": sizes,
                       "n_seq": cfg["n_seq"], "steps": cfg["steps"], "burn_in": cfg["burn_in"]})
    outs = ctx.map(spectra_shard, shards, desc="lyapunov")
    return {"spectra": pd.concat([o["spectra"] for o in outs], ignore_index=True),
            "training": pd.concat([o["summary"] for o in outs], ignore_index=True)}


def _lambda1(spectra: pd.DataFrame) -> pd.DataFrame:
    """Largest exponent per (task, cell, condition, model), averaged over driving sequences."""
    top = spectra[spectra["index"] == 1]
    return top.groupby(["task", "cell", "condition", "model"], as_index=False).exponent.mean()


LAMBDA1 = Declaration(
    "lambda1-{task}", "On {task}, the largest Lyapunov exponent of trained {van} is more negative than that of "
    "trained {gat} (faster forgetting).", "mean lambda1({van}) - mean lambda1({gat}) over trained models",
    0.0, "<", 0.1, "normal", planning={"sd": 0.15}, units="trained models per cell",
    paper="(beyond the papers) Stérin et al.: as soon as l becomes large, the discrepancy ability of Vanilla RNNs "
          "becomes very close to 0", figure="lambda1")
DECLARATIONS = [LAMBDA1]


def claims(tables, cfg) -> list:
    lam = _lambda1(tables["spectra"])
    out = []
    for task, cells in (("first", cells_list(cfg["cells"])), ("embedded-reber", cells_list(cfg["reber_cells"]))):
        if len(cells) < 2:
            continue
        van, gat = cells[0], cells[1]
        a = lam.query("task == @task and cell == @van and condition == 'trained'").exponent.to_numpy()
        b = lam.query("task == @task and cell == @gat and condition == 'trained'").exponent.to_numpy()
        out.append(LAMBDA1.decide(stats.mean_difference(a, b, LAMBDA1.level(cfg)), dict(task=task, van=van, gat=gat),
                                  {"mean_" + van: float(np.mean(a)) if len(a) else None,
                                   "mean_" + gat: float(np.mean(b)) if len(b) else None,
                                   "median_" + van: float(np.median(a)) if len(a) else None,
                                   "median_" + gat: float(np.median(b)) if len(b) else None},
                                  scale=("inits", cfg["inits"])))
    return out


def figures(tables, cfg) -> dict:
    sp = tables["spectra"]
    tasks_ = sorted(sp.task.unique())
    fig, axes = style.figure(1, len(tasks_), w=4.6, h=3.4)
    for ax, task in zip(axes[0], tasks_):
        for (cell, cond), g in sp[sp.task == task].groupby(["cell", "condition"]):
            piv = g.groupby(["model", "index"]).exponent.mean().unstack()
            style.curve_band(ax, piv.columns.to_numpy(), piv.to_numpy(), f"{cell} ({cond})", style.color(cell))
            if cond == "random":
                ax.lines[-1].set_linestyle("--")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(f"Lyapunov spectrum — {task}", fontsize=9)
        ax.set_xlabel("exponent index")
        ax.set_ylabel("exponent (per step)")
        ax.legend(fontsize=7)
    lam = _lambda1(sp)
    fig2, axes2 = style.figure(1, len(tasks_), w=4.2, h=3.2)
    for ax, task in zip(axes2[0], tasks_):
        sel = lam[lam.task == task]
        labels, data = [], []
        for (cell, cond), g in sel.groupby(["cell", "condition"]):
            labels.append(f"{cell}\n{cond}")
            data.append(g.exponent.to_numpy())
        ax.boxplot(data, tick_labels=labels)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(f"largest exponent λ1 — {task}", fontsize=9)
        ax.set_ylabel("λ1")
        ax.tick_params(axis="x", labelsize=7)
    return {"spectra": fig, "lambda1": fig2}


def run(config=None, **kw):
    return base.run(NAME, config, **kw)
